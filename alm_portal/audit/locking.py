"""Transaction-scoped serialisation for the audit chain and its checkpoints."""

from __future__ import annotations

from django.db import transaction

# pg_advisory_xact_lock keys (signed 64-bit); arbitrary but fixed, and distinct from other apps' keys.
AUDIT_CHAIN_LOCK_KEY = 0x414C4D41_55444954  # "ALMAUDIT"
AUDIT_CHECKPOINT_LOCK_KEY = 0x414C4D43_4B505431  # "ALMCKPT1"


def hold_transaction_lock(key: int) -> None:
    """Block until this transaction holds `key`; it is released when the transaction ends.

    PostgreSQL: a transaction-level advisory lock, so nothing can forget to release it. SQLite: the
    settings open every transaction with BEGIN IMMEDIATE, which already admits one writer at a time,
    so there is nothing to take here.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("a transaction lock is only meaningful inside transaction.atomic()")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: their checks would run at
            # COMMIT, while we hold this lock, and could wait there for a row another transaction
            # holds while it waits for this lock (a deadlock). Run them now, before taking it.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
