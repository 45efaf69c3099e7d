"""The export airlock at a site: files frozen, hashed and checked before a reviewer sees them.

- `freeze`: the request's files copied out of the home into the site's export area,
  hashed, made read-only, listed in a manifest (contracts.export.Manifest);
- `checks`: the automatic checks of each frozen file (kind, size, recogniser,
  disclosure), with `kinds`, `tables` and `disclosure` beneath them;
- `client`: `request_export` and `export_requests`, for a notebook or a terminal;
- `__main__`: `python -m extensions.guard.export freeze|read|request|requests`.

The hub's export service (hub/services/export) runs `freeze` in a short-lived
container at the site and keeps the manifest with the request; see
extensions/contracts/export.py for what both sides agree on.
"""

from .client import ExportRequestError, export_requests, request_export

__all__ = ["ExportRequestError", "export_requests", "request_export"]
