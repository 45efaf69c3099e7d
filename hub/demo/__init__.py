"""The demo's processes: what `make demo` and the integration tests start."""
