"""Federated analysis for notebooks: `connect()`, the tasks, and the `catalogue()` (see
extensions.federation.client and extensions.federation.catalogue)."""


def connect(*args, **kwargs):
    """The sites you may analyse; see extensions.federation.client.connect."""
    from .client import connect as _connect

    return _connect(*args, **kwargs)


def catalogue(*args, **kwargs):
    """The datasets and counts of people for planning; see extensions.federation.catalogue."""
    from .catalogue import catalogue as _catalogue

    return _catalogue(*args, **kwargs)
