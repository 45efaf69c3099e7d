"""The enforcer: stops servers whose approval ended or whose person was suspended."""
