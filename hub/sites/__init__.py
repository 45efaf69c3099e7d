"""A site's Docker side: its plan (names, addresses), the engine, the firewall, its containers."""
