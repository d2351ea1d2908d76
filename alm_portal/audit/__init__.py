"""Append-only, hash-chained audit history (docs/audit.md).

Writers call `alm_portal.audit.services.record()` inside their own transaction, or
`record_outcome()` after a rollback for denied and failed attempts.
"""
