"""Federated analysis for notebooks: `connect()` and the tasks (see extensions.analysis.client)."""


def connect(*args, **kwargs):
    """The sites you may analyse; see extensions.analysis.client.connect."""
    from .client import connect as _connect

    return _connect(*args, **kwargs)
