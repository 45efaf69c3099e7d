"""Synthetic cohorts and ingest (VCF -> Zarr, MatrixTable, the per-site summary cache)."""


class IngestError(Exception):
    """A dataset that cannot be ingested; the message names the file and what is wrong."""
