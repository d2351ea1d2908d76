"""Solutions and their immutable versions (built in the registry issue)."""
