"""Synthetic cohorts and ingest (VCF -> Zarr, MatrixTable, the per-site summary cache)."""
