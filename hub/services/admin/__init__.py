"""The admin service: the secretariat's and the site admins' pages and API."""
