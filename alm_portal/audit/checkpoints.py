"""Signed checkpoints of the audit chain, kept outside PostgreSQL (docs/security.md "The audit trail").

Like CloudTrail's digest files: a JSON file per checkpoint in the artifact storage, under the chain it belongs
to, a thousand to a folder:

    audit-checkpoints/<chain id>/<index // 1000, 9 digits>/<index, 12 digits>.json
    {"index": 7, "chain_id": "alm-prod", "genesis_hash": "<hash of seq 1>", "head_seq": 1234, "head_hash": "…",
     "previous_checkpoint_hash": "<sha256 of file 6>", "written_at": "2026-11-26T11:00:00.000000Z",
     "signature": "<HMAC-SHA-256 of the other fields>"}

When: at least every ALM_AUDIT_CHECKPOINT_SECONDS (60) while events arrive, by whichever process commits an
event once the interval has passed (checkpoint_when_due, run after the commit; a cache key lets one process
in); by beat at the same interval for the events of the last interval when no more arrive; and on every
successful verification. So a rewrite of events by whoever owns the database, re-hashed to look intact, is
found by the next verification unless it only touches the newest interval's events.

Bound to their chain: ALM_AUDIT_CHAIN_ID names the folder, so a second database sharing the artifact storage
(with its own chain id) never reads this one's checkpoints as its own; and each checkpoint signs the hash of
the chain's first event, so a chain rewritten from seq 1 no longer matches the checkpoints of its folder.

The HMAC key (settings.ALM_AUDIT_CHECKPOINT_KEY) is not in the database, so someone who can rewrite audit rows
cannot re-sign checkpoints to match. Files are chained through `previous_checkpoint_hash` and numbered without
gaps, so a removed or edited checkpoint is found as well (except the newest file itself, which nothing names
yet: keep the storage write-once, e.g. Azure immutable blobs or S3 Object Lock, for that).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import transaction
from django.utils import timezone

from alm_portal.audit.canonical import format_timestamp
from alm_portal.audit.locking import AUDIT_CHECKPOINT_LOCK_KEY, hold_transaction_lock
from alm_portal.audit.models import AuditEvent

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "audit-checkpoints"
STORAGE_ALIAS = "artifacts"
PER_FOLDER = 1000
_NAME_PATTERN = re.compile(r"^(\d{12})\.json$")
_FOLDER_PATTERN = re.compile(r"^\d{9}$")
_SIGNED_FIELDS = (
    "index",
    "chain_id",
    "genesis_hash",
    "head_seq",
    "head_hash",
    "previous_checkpoint_hash",
    "written_at",
)
FIRST_PREVIOUS = "0" * 64
_DUE_GATE_KEY = "audit:checkpoint-due"
# A process asks the shared gate at most this often, so committing events costs no cache call in between.
_LOCAL_RECHECK_SECONDS = 1.0


class CheckpointError(RuntimeError):
    """A checkpoint could not be written."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file whose signature is valid."""

    name: str  # the path below the chain's folder, e.g. 000000000/000000000007.json
    index: int
    chain_id: str
    genesis_hash: str
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


def chain_id() -> str:
    return str(settings.ALM_AUDIT_CHAIN_ID)


def chain_folder(chain: str | None = None) -> str:
    return f"{CHECKPOINT_DIR}/{chain or chain_id()}"


def _signature(payload: dict[str, Any]) -> str:
    message = json.dumps({name: payload[name] for name in _SIGNED_FIELDS}, sort_keys=True, separators=(",", ":"))
    return hmac.new(_key(), message.encode("utf-8"), hashlib.sha256).hexdigest()


def _relative_name(index: int) -> str:
    return f"{(index - 1) // PER_FOLDER:09d}/{index:012d}.json"


def _listdir(storage: Storage, path: str) -> tuple[list[str], list[str]]:
    try:
        folders, files = storage.listdir(path)
    except FileNotFoundError:
        return [], []
    return sorted(folders), sorted(files)


def _names(storage: Storage, folder: str) -> list[str]:
    """Every entry of the chain's folder in write order (zero-padded numbers sort so); anything that is not
    a checkpoint name is returned too, so that load reports it."""
    folders, stray = _listdir(storage, folder)
    names = [f"{name}" for name in stray]
    for sub in folders:
        _, files = _listdir(storage, f"{folder}/{sub}")
        names += [f"{sub}/{name}" for name in files]
    return sorted(names)


def _newest_name(storage: Storage, folder: str) -> str | None:
    """The newest checkpoint of the chain, listing only the last folder (a chain may hold hundreds of thousands)."""
    folders, _ = _listdir(storage, folder)
    for sub in reversed([name for name in folders if _FOLDER_PATTERN.match(name)]):
        _, files = _listdir(storage, f"{folder}/{sub}")
        numbered = [name for name in files if _NAME_PATTERN.match(name)]
        if numbered:
            return f"{sub}/{numbered[-1]}"
    return None


def _read(storage: Storage, path: str) -> bytes:
    with storage.open(path, "rb") as handle:
        return handle.read()


def genesis_hash() -> str | None:
    """The hash of the chain's first event (seq 1), which every checkpoint of the chain signs."""
    return AuditEvent.objects.filter(seq=1).values_list("hash", flat=True).first()


def write_checkpoint(
    *, head_seq: int | None = None, head_hash: str | None = None, only_if_moved: bool = False
) -> Checkpoint | None:
    """Sign the given head (default: the newest committed event) and store it as the chain's next checkpoint.

    Returns None when there is nothing to sign: an empty log, or with `only_if_moved` a head the newest
    checkpoint already signs. Writers are serialised by a transaction lock so that each file names its real
    predecessor. Safe to run twice: a second run writes a second checkpoint of the same (or a newer) head.
    """
    storage = _storage()
    folder = chain_folder()
    with transaction.atomic():
        hold_transaction_lock(AUDIT_CHECKPOINT_LOCK_KEY)
        if head_seq is None or head_hash is None:
            head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
            if head is None:
                return None
            head_seq, head_hash = head
        genesis = genesis_hash()
        if genesis is None or head_seq < 1:
            return None  # an empty chain has no identity to sign yet
        newest = _newest_name(storage, folder)
        if newest is not None:
            newest_bytes = _read(storage, f"{folder}/{newest}")
            if only_if_moved and _signed_head(newest_bytes) == head_seq:
                return None
            match = _NAME_PATTERN.match(newest.rsplit("/", 1)[-1])
            index = int(match.group(1)) + 1  # type: ignore[union-attr]
            previous = hashlib.sha256(newest_bytes).hexdigest()
        else:
            index, previous = 1, FIRST_PREVIOUS
        payload: dict[str, Any] = {
            "index": index,
            "chain_id": chain_id(),
            "genesis_hash": genesis,
            "head_seq": head_seq,
            "head_hash": head_hash,
            "previous_checkpoint_hash": previous,
            "written_at": format_timestamp(timezone.now()),
        }
        payload["signature"] = _signature(payload)
        content = (json.dumps(payload, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
        name = _relative_name(index)
        path = f"{folder}/{name}"
        if storage.exists(path):
            raise CheckpointError(f"{path} already exists; checkpoints are never overwritten")
        saved = storage.save(path, ContentFile(content))
        if saved != path:  # a backend that renames instead of refusing would break the numbering
            raise CheckpointError(f"storage saved {path} as {saved}")
    return Checkpoint(
        name=name,
        index=index,
        chain_id=payload["chain_id"],
        genesis_hash=genesis,
        head_seq=head_seq,
        head_hash=head_hash,
        previous_checkpoint_hash=previous,
        written_at=payload["written_at"],
        digest=hashlib.sha256(content).hexdigest(),
    )


def _signed_head(content: bytes) -> int | None:
    try:
        return int(json.loads(content)["head_seq"])
    except (ValueError, KeyError, TypeError):
        return None


class _DueClock(threading.local):
    last_asked = float("-inf")


_due_clock = _DueClock()


def checkpoint_when_due() -> Checkpoint | None:
    """After an event commits: write a checkpoint if none was written for ALM_AUDIT_CHECKPOINT_SECONDS.

    Every process that commits events calls this (audit.services registers it with on_commit). A process
    asks the shared gate (a cache key that lives for a little less than the interval) at most once a second;
    the one that gets it writes. A failure is logged, never raised: the event is committed, and beat's
    checkpoint task runs at the same interval.
    """
    now = time.monotonic()
    if now - _due_clock.last_asked < _LOCAL_RECHECK_SECONDS:
        return None
    _due_clock.last_asked = now
    interval = int(settings.ALM_AUDIT_CHECKPOINT_SECONDS)
    try:
        if not cache.add(_DUE_GATE_KEY, 1, timeout=max(1, interval - 2)):
            return None
        return write_checkpoint(only_if_moved=True)
    except Exception:
        logger.exception("could not write an audit checkpoint; beat's checkpoint task will try again")
        return None


def load_checkpoints(*, chain: str | None = None) -> LoadedCheckpoints:
    """Read every checkpoint of the chain, check signatures, chain ids, numbering and chaining."""
    storage = _storage()
    expected_chain = chain or chain_id()
    folder = chain_folder(expected_chain)
    loaded = LoadedCheckpoints()
    previous_digest = FIRST_PREVIOUS
    expected_index = 1
    for name in _names(storage, folder):
        content = _read(storage, f"{folder}/{name}")
        digest = hashlib.sha256(content).hexdigest()
        try:
            payload = json.loads(content)
            head_seq = int(payload["head_seq"])
            fields_ok = isinstance(payload, dict) and all(key in payload for key in (*_SIGNED_FIELDS, "signature"))
        except (ValueError, KeyError, TypeError):
            payload, head_seq, fields_ok = None, 0, False
        match = _NAME_PATTERN.match(name.rsplit("/", 1)[-1])
        if not fields_ok or match is None or payload is None or name != _relative_name(int(match.group(1))):
            loaded.problems.append(CheckpointProblem(name, head_seq, f"checkpoint {name} is not readable"))
        elif not hmac.compare_digest(str(payload["signature"]), _signature(payload)):
            loaded.problems.append(
                CheckpointProblem(name, head_seq, f"checkpoint {name} has an invalid signature (forged or altered)")
            )
        elif payload["chain_id"] != expected_chain:
            loaded.problems.append(
                CheckpointProblem(name, head_seq, f"checkpoint {name} names chain {payload['chain_id']!r}")
            )
        elif payload["index"] != int(match.group(1)) or payload["index"] != expected_index:
            loaded.problems.append(
                CheckpointProblem(name, head_seq, f"checkpoint {name} is out of sequence (expected {expected_index})")
            )
        elif payload["previous_checkpoint_hash"] != previous_digest:
            loaded.problems.append(
                CheckpointProblem(name, head_seq, f"checkpoint {name} does not name the previous checkpoint")
            )
        else:
            loaded.valid.append(
                Checkpoint(
                    name=name,
                    index=payload["index"],
                    chain_id=payload["chain_id"],
                    genesis_hash=payload["genesis_hash"],
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
