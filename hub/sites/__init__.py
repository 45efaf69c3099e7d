"""A site's Docker side: its plan (names, addresses), the engine, the firewall, its containers."""


class SiteError(Exception):
    """A site could not be set up; the message names the site and the part."""
