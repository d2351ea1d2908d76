"""The durable job engine, below every domain app: the Job row, its states, leases, the environment slot,
dispatch and the handler registry. Each app registers its own job kinds and handlers (docs/architecture.md)."""
