"""The guard: a Jupyter server extension that keeps raw data from the browser, enforces the
approval period, and records activity for the audit log."""


def _jupyter_server_extension_points():
    from .app import GuardApp

    return [{"module": "extensions.guard", "app": GuardApp}]
