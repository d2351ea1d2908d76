"""The emulator's state: JSON written atomically after every change, zips beside it.

Layout next to the state file (``--state FILE``):
    FILE                  tenants, clients, identities, settings, counters (everything but the orgs)
    FILE.orgs/<org>.json  one file per org (its solutions, components, jobs, history, faults, …), so a
                          change to one org rewrites that org only, however many orgs a test session makes
    blobs/<sha256>.zip    every solution package the emulator received or produced, by SHA-256
    ca.pem, server.pem, server-key.pem   the TLS material (tls.py)

In memory it is one dict (``Store.data``, orgs under ``data["orgs"]``). Writers say which orgs they
changed (``save(orgs=[…])``); ``save()`` without orgs writes them all.

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
        self.org_dir = state_path.with_name(state_path.name + ".orgs")
        self.blob_dir = self.dir / "blobs"
        self.lock = threading.RLock()
        self.dirty: set[str] = set()  # orgs with changes that may wait for the next flush (request counters)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.org_dir.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
            names = self.data.pop("org_names", None)
            orgs = self.data.setdefault("orgs", {})
            for name in names or []:
                org_file = self.org_dir / f"{name}.json"
                if org_file.exists():
                    orgs[name] = json.loads(org_file.read_text(encoding="utf-8"))
        else:
            self.data = empty_state()
            self.save()

    def save(self, orgs: list[str] | tuple[str, ...] | set[str] | None = None) -> None:
        """Write the global file and the given orgs (all orgs when ``orgs`` is None), each atomically
        (temp file in the same directory + os.replace).

        No fsync: os.replace already guarantees a reader (or a restarted emulator) sees the old or the
        new file, never a torn one; surviving power loss is not the emulator's job.
        """
        with self.lock:
            names = list(self.data["orgs"]) if orgs is None else list(orgs)
            for name in names:
                org_file = self.org_dir / f"{name}.json"
                if name in self.data["orgs"]:
                    self._write(org_file, self.data["orgs"][name])
                elif org_file.exists():  # a deleted org
                    org_file.unlink()
                self.dirty.discard(name)
            global_part = {k: v for k, v in self.data.items() if k != "orgs"}
            global_part["org_names"] = sorted(self.data["orgs"])
            self._write(self.path, global_part)
            if orgs is None:  # a full save also removes the files of deleted orgs
                for stale in self.org_dir.glob("*.json"):
                    if stale.stem not in self.data["orgs"]:
                        stale.unlink()

    def _write(self, path: Path, payload: Any) -> None:
        text = json.dumps(payload, separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def mark_dirty(self, org: str) -> None:
        """Remember a minor change of an org; ``flush`` (background thread, shutdown) writes it."""
        self.dirty.add(org)

    def flush(self) -> None:
        with self.lock:
            if self.dirty:
                self.save(orgs=set(self.dirty))

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
