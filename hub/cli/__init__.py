"""The `visiting` command."""
