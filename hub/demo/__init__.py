"""The demo's processes: what `make demo` and the integration tests start."""


class StackError(Exception):
    """The stack could not be started or stopped; the message says which part and why."""
