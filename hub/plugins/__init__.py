"""What JupyterHub loads: its configuration, the authenticator, the spawner, the home page."""
