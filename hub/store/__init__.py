"""The database: the approval registry and the audit chain."""
