"""Signed checkpoints of the audit chain, kept outside PostgreSQL (docs/audit.md).

Like CloudTrail's digest files: every hour (Celery beat) and after every successful verification,
a JSON file `audit-checkpoints/<index>.json` is written to the artifact storage:

    {"index": 7, "head_seq": 1234, "head_hash": "…", "previous_checkpoint_hash": "<sha256 of file 6>",
     "written_at": "2026-11-26T11:00:00.000000Z", "signature": "<HMAC-SHA-256 of the other fields>"}

The HMAC key (settings.ALM_AUDIT_CHECKPOINT_KEY) is not in the database, so someone who can rewrite
audit rows cannot re-sign checkpoints to match. Verification compares every checkpoint with the
row it names: deleting the newest rows, or rewriting and re-hashing any row up to a checkpointed
seq, is found. Files are chained through `previous_checkpoint_hash` and numbered without gaps, so a
removed or edited checkpoint is found as well (except the newest file itself, which nothing names
yet: keep the storage write-once, e.g. Azure immutable blobs or S3 Object Lock, for that).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import transaction
from django.utils import timezone

from alm_portal.audit.canonical import GENESIS_HASH, format_timestamp
from alm_portal.audit.locking import AUDIT_CHECKPOINT_LOCK_KEY, hold_transaction_lock
from alm_portal.audit.models import AuditEvent

CHECKPOINT_DIR = "audit-checkpoints"
STORAGE_ALIAS = "artifacts"
_NAME_PATTERN = re.compile(r"^(\d{12})\.json$")
_SIGNED_FIELDS = ("index", "head_seq", "head_hash", "previous_checkpoint_hash", "written_at")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file whose signature is valid."""

    name: str
    index: int
    head_seq: int
    head_hash: str
    previous_checkpoint_hash: str
    written_at: str
    digest: str  # SHA-256 of the file's bytes: what the next checkpoint names as its previous one


@dataclass(frozen=True)
class CheckpointProblem:
    """A checkpoint that cannot be trusted, with the seq it claims (0 if unreadable)."""

    name: str
    head_seq: int
    detail: str


@dataclass
class LoadedCheckpoints:
    valid: list[Checkpoint] = field(default_factory=list)
    problems: list[CheckpointProblem] = field(default_factory=list)


def _storage() -> Storage:
    return storages[STORAGE_ALIAS]


def _key() -> bytes:
    key = settings.ALM_AUDIT_CHECKPOINT_KEY
    if not key:
        raise ImproperlyConfigured("ALM_AUDIT_CHECKPOINT_KEY must be set to sign audit checkpoints")
    return str(key).encode("utf-8")


def _signature(payload: dict[str, Any]) -> str:
    message = json.dumps({name: payload[name] for name in _SIGNED_FIELDS}, sort_keys=True, separators=(",", ":"))
    return hmac.new(_key(), message.encode("utf-8"), hashlib.sha256).hexdigest()


def _names(storage: Storage) -> list[str]:
    try:
        _, files = storage.listdir(CHECKPOINT_DIR)
    except FileNotFoundError:
        return []
    # Zero-padded indexes sort in write order; anything else in the folder is reported by load.
    return sorted(files)


def _read(storage: Storage, filename: str) -> bytes:
    with storage.open(f"{CHECKPOINT_DIR}/{filename}", "rb") as handle:
        return handle.read()


def write_checkpoint(*, head_seq: int | None = None, head_hash: str | None = None) -> Checkpoint:
    """Sign the given head (default: the newest committed event) and store it as the next checkpoint.

    Writers are serialised by a transaction lock so that each file names its real predecessor. Safe to
    run twice: a second run writes a second checkpoint of the same (or a newer) head.
    """
    storage = _storage()
    with transaction.atomic():
        hold_transaction_lock(AUDIT_CHECKPOINT_LOCK_KEY)
        if head_seq is None or head_hash is None:
            head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
            head_seq, head_hash = head if head else (0, GENESIS_HASH)
        existing = [name for name in _names(storage) if _NAME_PATTERN.match(name)]
        if existing:
            index = int(_NAME_PATTERN.match(existing[-1]).group(1)) + 1  # type: ignore[union-attr]
            previous = hashlib.sha256(_read(storage, existing[-1])).hexdigest()
        else:
            index, previous = 1, GENESIS_HASH
        payload: dict[str, Any] = {
            "index": index,
            "head_seq": head_seq,
            "head_hash": head_hash,
            "previous_checkpoint_hash": previous,
            "written_at": format_timestamp(timezone.now()),
        }
        payload["signature"] = _signature(payload)
        content = (json.dumps(payload, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
        filename = f"{index:012d}.json"
        name = f"{CHECKPOINT_DIR}/{filename}"
        if storage.exists(name):
            raise CheckpointError(f"{name} already exists; checkpoints are never overwritten")
        saved = storage.save(name, ContentFile(content))
        if saved != name:  # a backend that renames instead of refusing would break the numbering
            raise CheckpointError(f"storage saved {name} as {saved}")
    return Checkpoint(
        name=filename,
        index=index,
        head_seq=head_seq,
        head_hash=head_hash,
        previous_checkpoint_hash=previous,
        written_at=payload["written_at"],
        digest=hashlib.sha256(content).hexdigest(),
    )


def load_checkpoints() -> LoadedCheckpoints:
    """Read every checkpoint, check signatures, numbering and chaining; sort good from bad."""
    storage = _storage()
    loaded = LoadedCheckpoints()
    previous_digest = GENESIS_HASH
    expected_index = 1
    for filename in _names(storage):
        content = _read(storage, filename)
        digest = hashlib.sha256(content).hexdigest()
        try:
            payload = json.loads(content)
            head_seq = int(payload["head_seq"])
            fields_ok = isinstance(payload, dict) and all(name in payload for name in (*_SIGNED_FIELDS, "signature"))
        except (ValueError, KeyError, TypeError):
            payload, head_seq, fields_ok = None, 0, False
        match = _NAME_PATTERN.match(filename)
        if not fields_ok or match is None or payload is None:
            loaded.problems.append(CheckpointProblem(filename, head_seq, f"checkpoint {filename} is not readable"))
        elif not hmac.compare_digest(str(payload["signature"]), _signature(payload)):
            loaded.problems.append(
                CheckpointProblem(
                    filename, head_seq, f"checkpoint {filename} has an invalid signature (forged or altered)"
                )
            )
        elif payload["index"] != int(match.group(1)) or payload["index"] != expected_index:
            loaded.problems.append(
                CheckpointProblem(
                    filename, head_seq, f"checkpoint {filename} is out of sequence (expected {expected_index})"
                )
            )
        elif payload["previous_checkpoint_hash"] != previous_digest:
            loaded.problems.append(
                CheckpointProblem(filename, head_seq, f"checkpoint {filename} does not name the previous checkpoint")
            )
        else:
            loaded.valid.append(
                Checkpoint(
                    name=filename,
                    index=payload["index"],
                    head_seq=head_seq,
                    head_hash=payload["head_hash"],
                    previous_checkpoint_hash=payload["previous_checkpoint_hash"],
                    written_at=payload["written_at"],
                    digest=digest,
                )
            )
        previous_digest = digest
        expected_index = (int(match.group(1)) if match else expected_index) + 1
    return loaded
