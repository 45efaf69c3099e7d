"""Rules without a web framework: what the pages, services and commands share."""
