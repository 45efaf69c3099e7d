"""Federated analysis for notebooks: `connect()`, the tasks, and the `catalogue()` (see
extensions.analysis.client and extensions.analysis.catalogue)."""


def connect(*args, **kwargs):
    """The sites you may analyse; see extensions.analysis.client.connect."""
    from .client import connect as _connect

    return _connect(*args, **kwargs)


def catalogue(*args, **kwargs):
    """The datasets and counts of people for planning; see extensions.analysis.catalogue."""
    from .catalogue import catalogue as _catalogue

    return _catalogue(*args, **kwargs)
