"""The emulator's state: one JSON document written atomically after every change, zips beside it.

Layout next to the state file (``--state FILE``):
    FILE                  the JSON state (tenants, clients, identities, orgs and their tables)
    blobs/<sha256>.zip    every solution package the emulator received or produced, by SHA-256
    ca.pem, server.pem, server-key.pem   the TLS material (tls.py)

All access goes through ``Store.lock`` (a re-entrant lock): the HTTP server is threaded, and the
background finaliser of async operations (solutions.py) runs in its own thread.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATE_VERSION = 1


def now() -> float:
    """Wall-clock seconds; one function so every timestamp comes from the same clock."""
    return time.time()


def iso(ts: float | None) -> str | None:
    """Dataverse writes DateTime values as ``2024-01-31T10:00:00Z`` (UTC, whole seconds)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    return str(uuid.uuid4())


def empty_state() -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "created_at": now(),
        "signing_key_pem": None,
        "token_generation": 0,
        "settings": {},
        "tenants": {},
        "orgs": {},
        "counters": {"imports": {}},
        "seeded": [],
    }


class Store:
    """Owns the state dict, its lock and the blob directory."""

    def __init__(self, state_path: Path) -> None:
        self.path = state_path
        self.dir = state_path.parent
        self.blob_dir = self.dir / "blobs"
        self.lock = threading.RLock()
        self.dirty = False  # a change that may wait for the next flush (request counters)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        else:
            self.data = empty_state()
            self.save()

    def save(self) -> None:
        """Write the state atomically (temp file in the same directory + os.replace).

        No fsync: os.replace already guarantees a reader (or a restarted emulator) sees the old or the
        new file, never a torn one; surviving power loss is not the emulator's job.
        """
        with self.lock:
            payload = json.dumps(self.data, separators=(",", ":"))
            fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=self.dir)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(payload)
                os.replace(tmp, self.path)
                self.dirty = False
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise

    def mark_dirty(self) -> None:
        """Remember a minor change; ``flush`` (background thread, shutdown) writes it."""
        self.dirty = True

    def flush(self) -> None:
        with self.lock:
            if self.dirty:
                self.save()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.data)

    # --- blobs -----------------------------------------------------------------------------
    def put_blob(self, sha256: str, data: bytes) -> None:
        path = self.blob_dir / f"{sha256}.zip"
        if path.exists():
            return
        fd, tmp = tempfile.mkstemp(prefix=".blob-", dir=self.blob_dir)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)

    def get_blob(self, sha256: str) -> bytes:
        return (self.blob_dir / f"{sha256}.zip").read_bytes()

    # --- convenience accessors ----------------------------------------------------------------
    def org(self, name: str) -> dict[str, Any] | None:
        return self.data["orgs"].get(name)

    def tenant(self, tenant_id: str) -> dict[str, Any] | None:
        return self.data["tenants"].get(tenant_id)

    def next_row_version(self, org: dict[str, Any]) -> int:
        """Monotonic per-org row version, shown as ``@odata.etag`` ``W/"<n>"`` (DOC-ERR examples)."""
        org["row_version"] = org.get("row_version", 1000000) + 1
        return org["row_version"]
