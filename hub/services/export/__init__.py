"""The export airlock: requests to take files out of a site, their review and release."""
