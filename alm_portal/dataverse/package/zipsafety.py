"""Reading solution zips without trusting them.

Nothing is extracted to disk. Every entry is inflated by our own loop over its raw compressed bytes, so the
byte and ratio limits count what is actually decompressed: a header that lies about sizes cannot smuggle more
data past the limits (it is refused as ``corrupt_entry`` afterwards, or stopped by a limit first).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, TypeAlias
from xml.etree.ElementTree import Element

from .errors import PackageError, PackageErrorCode
from .xmlsafe import XmlBudget, XmlFeed, XmlLimits

MAX_ENTRIES = 5_000
MAX_TOTAL_UNCOMPRESSED_BYTES = 1024**3
MAX_COMPRESSION_RATIO = 100.0
# Tiny entries can legitimately exceed 100:1 (a few KB of repeated XML); the ratio rule applies once an entry
# has produced this many bytes, which is far too little to hurt and far too early for a bomb to get going.
RATIO_GRACE_BYTES = 64 * 1024
READ_CHUNK_BYTES = 64 * 1024

# Dataverse refuses a zip without these at its root (ImportCustomizationsBadZipFileError, docs/dataverse.md §11.1).
ROOT_FILES = ("solution.xml", "customizations.xml", "[Content_Types].xml")
NESTED_ARCHIVE_SUFFIXES = (".zip", ".7z", ".rar", ".cab", ".gz", ".tgz", ".tar", ".bz2", ".xz")
# Zip-based component formats that solutions legitimately carry: canvas app documents (CanvasApps/*.msapp, in 7 of
# the 25 corpus zips) and plug-in packages (NuGet). They are hashed as opaque files and never opened.
ALLOWED_PACKAGE_SUFFIXES = (".msapp", ".nupkg")

PackageSource: TypeAlias = "str | os.PathLike[str] | bytes | IO[bytes]"

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")
_END_RECORD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")
_LOCAL_SIGNATURE = b"PK\x03\x04"
_CENTRAL_SIGNATURE = b"PK\x01\x02"
_END_SIGNATURE = b"PK\x05\x06"
_ZIP_MAGICS = (_LOCAL_SIGNATURE, _END_SIGNATURE)
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_MAGIC_PROBE_BYTES = 265  # tar's "ustar" sits at offset 257


@dataclass(frozen=True)
class ZipLimits:
    """Refusal thresholds; tests pass small ones to stay fast."""

    max_entries: int = MAX_ENTRIES
    max_total_bytes: int = MAX_TOTAL_UNCOMPRESSED_BYTES
    max_compression_ratio: float = MAX_COMPRESSION_RATIO
    ratio_grace_bytes: int = RATIO_GRACE_BYTES
    allowed_package_suffixes: tuple[str, ...] = ALLOWED_PACKAGE_SUFFIXES
    # Per parsed document, and per entry a reader keeps in memory (xml.max_bytes): see xmlsafe.py.
    xml: XmlLimits = field(default_factory=XmlLimits)


@dataclass(frozen=True)
class ZipEntry:
    """One file in a package: its name, actual decompressed size and SHA-256."""

    name: str
    size: int
    compressed_size: int
    sha256: str


@dataclass(frozen=True)
class ZipScan:
    """The result of a full, checked pass over a zip."""

    entries: tuple[ZipEntry, ...]
    contents: Mapping[str, bytes]
    decompressed_bytes: int
    # Entries selected by ``parse``, parsed while they were inflated (xmlsafe.XmlFeed): never held as bytes.
    documents: Mapping[str, Element] = field(default_factory=dict)


@dataclass(frozen=True)
class EndRecord:
    """Where the central directory is, from the end-of-central-directory record."""

    entries: int
    cd_size: int
    cd_offset: int
    offset: int
    zip64: bool


def _refuse(code: PackageErrorCode, message: str, **details: object) -> PackageError:
    return PackageError(code, message, details=details)


@contextmanager
def open_source(source: PackageSource, limits: ZipLimits) -> Iterator[IO[bytes]]:
    """Yield a seekable binary file for a path, bytes or stream (non-seekable streams are spooled, bounded)."""
    if isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(bytes(source))
    elif isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            yield handle
    elif source.seekable():
        source.seek(0)
        yield source
    else:
        with tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024) as spool:
            copied = 0
            while chunk := source.read(READ_CHUNK_BYTES):
                copied += len(chunk)
                if copied > limits.max_total_bytes:
                    raise _refuse(PackageErrorCode.TOO_LARGE, "The upload is larger than the size limit.")
                spool.write(chunk)
            spool.seek(0)
            yield spool


def read_end_record(fp: IO[bytes]) -> EndRecord:
    """Locate the central directory; refuse anything that is not a single-volume zip."""
    fp.seek(0)
    if fp.read(4) not in _ZIP_MAGICS:
        raise _refuse(PackageErrorCode.NOT_A_ZIP, "The file is not a zip archive (it does not start with 'PK').")
    size = fp.seek(0, os.SEEK_END)
    tail_length = min(size, _END_RECORD.size + 0xFFFF)
    fp.seek(size - tail_length)
    tail = fp.read(tail_length)
    position = tail.rfind(_END_SIGNATURE)
    if position < 0 or position + _END_RECORD.size > len(tail):
        raise _refuse(PackageErrorCode.NOT_A_ZIP, "The file is not a complete zip archive (no central directory).")
    _, disk, cd_disk, disk_entries, entries, cd_size, cd_offset, _ = _END_RECORD.unpack_from(tail, position)
    offset = size - tail_length + position
    zip64 = entries == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF
    if zip64:
        fp.seek(max(offset - _ZIP64_LOCATOR.size, 0))
        locator = fp.read(_ZIP64_LOCATOR.size)
        if len(locator) != _ZIP64_LOCATOR.size or locator[:4] != b"PK\x06\x07":
            raise _refuse(PackageErrorCode.NOT_A_ZIP, "The zip archive's ZIP64 directory is missing.")
        fp.seek(_ZIP64_LOCATOR.unpack(locator)[2])
        record = fp.read(_ZIP64_END_RECORD.size)
        if len(record) != _ZIP64_END_RECORD.size or record[:4] != b"PK\x06\x06":
            raise _refuse(PackageErrorCode.NOT_A_ZIP, "The zip archive's ZIP64 directory is damaged.")
        _, _, _, _, disk, cd_disk, disk_entries, entries, cd_size, cd_offset = _ZIP64_END_RECORD.unpack(record)
    if disk != 0 or cd_disk != 0 or disk_entries != entries:
        raise _refuse(PackageErrorCode.NOT_A_ZIP, "Split or spanned zip archives are not supported.")
    if cd_offset + cd_size > offset:
        raise _refuse(PackageErrorCode.NOT_A_ZIP, "The zip archive's central directory is damaged.")
    return EndRecord(entries=entries, cd_size=cd_size, cd_offset=cd_offset, offset=offset, zip64=zip64)


def _count_entries(fp: IO[bytes], end: EndRecord, limits: ZipLimits) -> None:
    # The record's entry count is only a claim: walk the directory itself, stopping as soon as it is too long,
    # before zipfile builds an object per entry.
    too_many = _refuse(
        PackageErrorCode.TOO_MANY_ENTRIES,
        f"The zip archive has more than {limits.max_entries} entries.",
        limit=limits.max_entries,
    )
    if end.entries > limits.max_entries:
        raise too_many
    fp.seek(end.cd_offset)
    remaining, count = end.cd_size, 0
    while remaining > 0:
        head = fp.read(_CENTRAL_HEADER.size)
        if len(head) != _CENTRAL_HEADER.size or head[:4] != _CENTRAL_SIGNATURE:
            raise _refuse(PackageErrorCode.NOT_A_ZIP, "The zip archive's central directory is damaged.")
        name_length, extra_length, comment_length = struct.unpack_from("<3H", head, 28)
        fp.seek(name_length + extra_length + comment_length, os.SEEK_CUR)
        remaining -= _CENTRAL_HEADER.size + name_length + extra_length + comment_length
        count += 1
        if count > limits.max_entries:
            raise too_many
    if remaining != 0 or count != end.entries:
        raise _refuse(PackageErrorCode.NOT_A_ZIP, "The zip archive's central directory is damaged.")


def check_entry_name(name: str) -> None:
    """Refuse names that could escape a target directory or mean different files on different systems."""
    problem = None
    if not name:
        problem = "is empty"
    elif "\x00" in name:
        problem = "contains a NUL character"
    elif "\\" in name:
        problem = "contains a backslash"
    elif name.startswith("/"):
        problem = "is an absolute path"
    elif _DRIVE_LETTER.match(name):
        problem = "starts with a drive letter"
    elif ".." in name.split("/"):
        problem = "contains a '..' path segment"
    if problem:
        shown = name.replace("\x00", "\\x00")
        raise _refuse(PackageErrorCode.UNSAFE_NAME, f"The zip entry name '{shown}' {problem}.", entry=shown)


def _archive_kind(head: bytes) -> str | None:
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[:6] == b"7z\xbc\xaf\x27\x1c":
        return "7z"
    if head[:6] == b"Rar!\x1a\x07":
        return "rar"
    if head[:4] == b"MSCF":
        return "cab"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return "bzip2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[257:262] == b"ustar":
        return "tar"
    return None


def _is_allowed_package(name: str, limits: ZipLimits) -> bool:
    return name.lower().endswith(tuple(suffix.lower() for suffix in limits.allowed_package_suffixes))


def _check_entry(info: zipfile.ZipInfo, limits: ZipLimits) -> None:
    name = info.orig_filename
    check_entry_name(name)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise _refuse(PackageErrorCode.SYMLINK, f"The zip entry '{name}' is a symbolic link.", entry=name)
    if info.flag_bits & 0x1:
        raise _refuse(PackageErrorCode.ENCRYPTED_ENTRY, f"The zip entry '{name}' is encrypted.", entry=name)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _refuse(
            PackageErrorCode.UNSUPPORTED_COMPRESSION,
            f"The zip entry '{name}' uses compression method {info.compress_type}; only stored and deflate are read.",
            entry=name,
        )
    lowered = name.lower()
    if lowered.endswith(NESTED_ARCHIVE_SUFFIXES) and not _is_allowed_package(name, limits):
        raise _refuse(
            PackageErrorCode.NESTED_ARCHIVE, f"The zip entry '{name}' is an archive inside the archive.", entry=name
        )


class _Meter:
    """Counts decompressed bytes across a whole archive and per entry; raises as soon as a limit is passed."""

    def __init__(self, limits: ZipLimits) -> None:
        self.limits = limits
        self.total = 0

    def add(self, entry: str, produced_now: int, entry_out: int, entry_in: int) -> None:
        self.total += produced_now
        if self.total > self.limits.max_total_bytes:
            raise _refuse(
                PackageErrorCode.TOO_LARGE,
                f"The zip archive decompresses to more than {self.limits.max_total_bytes} bytes.",
                entry=entry,
                decompressed_bytes=self.total,
                limit=self.limits.max_total_bytes,
            )
        if entry_out > self.limits.ratio_grace_bytes and entry_out > self.limits.max_compression_ratio * max(
            entry_in, 1
        ):
            raise _refuse(
                PackageErrorCode.COMPRESSION_RATIO,
                f"The zip entry '{entry}' expands more than {self.limits.max_compression_ratio:g} times (a zip bomb?).",
                entry=entry,
                decompressed_bytes=self.total,
                entry_decompressed_bytes=entry_out,
                entry_compressed_bytes=entry_in,
            )


def entry_data_offset(fp: IO[bytes], info: zipfile.ZipInfo) -> int:
    """Offset of an entry's compressed bytes, after checking its local header agrees with the directory."""
    fp.seek(info.header_offset)
    header = fp.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
        raise _refuse(PackageErrorCode.CORRUPT_ENTRY, f"The zip entry '{info.filename}' is damaged.")
    name_length, extra_length = _LOCAL_HEADER.unpack(header)[10:12]
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    if fp.read(name_length) != info.orig_filename.encode(encoding):
        raise _refuse(
            PackageErrorCode.CORRUPT_ENTRY,
            f"The zip entry '{info.filename}' has a different name in its local header.",
            entry=info.filename,
        )
    return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length


def _inflate(fp: IO[bytes], info: zipfile.ZipInfo, meter: _Meter) -> Iterator[bytes]:
    name = info.filename
    fp.seek(entry_data_offset(fp, info))
    left = info.compress_size
    produced = 0
    crc = 0
    damaged = _refuse(PackageErrorCode.CORRUPT_ENTRY, f"The zip entry '{name}' is damaged or truncated.", entry=name)
    if info.compress_type == zipfile.ZIP_STORED:
        while left > 0:
            chunk = fp.read(min(READ_CHUNK_BYTES, left))
            if not chunk:
                raise damaged
            left -= len(chunk)
            produced += len(chunk)
            meter.add(name, len(chunk), produced, produced)
            crc = zlib.crc32(chunk, crc)
            yield chunk
    else:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        fed = 0
        pending = b""
        while not inflater.eof:
            if not pending:
                # The header's compressed size bounds what we read; the deflate stream's own end is what stops us.
                pending = fp.read(min(READ_CHUNK_BYTES, left)) if left > 0 else b""
                if not pending:
                    raise damaged
                left -= len(pending)
                fed += len(pending)
            try:
                chunk = inflater.decompress(pending, READ_CHUNK_BYTES)
            except zlib.error as exc:
                raise damaged from exc
            pending = inflater.unconsumed_tail
            if chunk:
                produced += len(chunk)
                meter.add(name, len(chunk), produced, fed - len(pending) - len(inflater.unused_data))
                crc = zlib.crc32(chunk, crc)
                yield chunk
    if produced != info.file_size or crc != info.CRC:
        raise _refuse(
            PackageErrorCode.CORRUPT_ENTRY,
            f"The zip entry '{name}' does not match the size or checksum in its header.",
            entry=name,
            header_size=info.file_size,
            actual_size=produced,
        )


@contextmanager
def open_checked_zip(fp: IO[bytes], limits: ZipLimits) -> Iterator[tuple[zipfile.ZipFile, EndRecord]]:
    """Open a zip after the structural checks that need no decompression (count, names, links, flags)."""
    end = read_end_record(fp)
    _count_entries(fp, end, limits)
    try:
        archive = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, OSError, EOFError, struct.error, ValueError) as exc:
        raise _refuse(PackageErrorCode.NOT_A_ZIP, "The file is not a readable zip archive.") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_entries:
            raise _refuse(
                PackageErrorCode.TOO_MANY_ENTRIES, f"The zip archive has more than {limits.max_entries} entries."
            )
        seen: set[str] = set()
        for info in infos:
            _check_entry(info, limits)
            # Case-insensitive because Dataverse runs on Windows: "Solution.xml" and "solution.xml" would collide.
            folded = info.orig_filename.casefold()
            if folded in seen:
                raise _refuse(
                    PackageErrorCode.DUPLICATE_NAME,
                    f"The zip archive holds '{info.orig_filename}' more than once.",
                    entry=info.orig_filename,
                )
            seen.add(folded)
        yield archive, end


def find_root_file(names: Iterable[str], wanted: str) -> str | None:
    """The entry name of a root-level file, matched case-insensitively."""
    for name in names:
        if name.casefold() == wanted.casefold():
            return name
    return None


def scan_zip(
    source: PackageSource,
    *,
    limits: ZipLimits | None = None,
    retain: Callable[[str], bool] = lambda name: False,
    parse: Callable[[str], bool] = lambda name: False,
    retained_are_documents: bool = False,
    require_root_files: bool = True,
) -> ZipScan:
    """Read every entry of a zip once, under the limits; keep the contents of entries ``retain`` selects and the
    parsed XML of entries ``parse`` selects (fed to the parser as they inflate, under ``limits.xml``).

    With ``retained_are_documents`` the kept entries are documents the caller parses itself (JSON values files,
    say), so their bytes count against the package's XML byte limit too; otherwise only the 1 GiB total bounds
    them (an unpacker keeps every file, binaries included).

    Raises ``PackageError`` for anything unsafe, damaged or over a limit.
    """
    limits = limits or ZipLimits()
    with open_source(source, limits) as fp, open_checked_zip(fp, limits) as (archive, _):
        infos = archive.infolist()
        names = [info.filename for info in infos]
        if require_root_files:
            missing = [wanted for wanted in ROOT_FILES if find_root_file(names, wanted) is None]
            if missing:
                raise _refuse(
                    PackageErrorCode.MISSING_ROOT_FILE,
                    "The zip archive must contain solution.xml, customizations.xml and [Content_Types].xml at its "
                    f"root; missing: {', '.join(missing)}.",
                    missing=missing,
                )
        if sum(info.file_size for info in infos) > limits.max_total_bytes:
            # Headers are never trusted to let data in, but a header that already admits to too much is refused
            # without inflating anything.
            raise _refuse(
                PackageErrorCode.TOO_LARGE,
                f"The zip archive declares more than {limits.max_total_bytes} bytes of content.",
                limit=limits.max_total_bytes,
            )
        meter = _Meter(limits)
        entries: list[ZipEntry] = []
        contents: dict[str, bytes] = {}
        documents: dict[str, Element] = {}
        budget = XmlBudget(limits.xml)  # every entry kept or parsed for this package spends from it
        for info in infos:
            keep = retain(info.filename)
            feed = XmlFeed(source=info.filename, budget=budget) if parse(info.filename) else None
            charged = feed is not None or (keep and retained_are_documents)
            if charged and budget.bytes + info.file_size > limits.xml.max_bytes:
                budget.spend_bytes(info.filename, info.file_size)  # a header that admits too much: refused now
            digest = hashlib.sha256()
            kept: list[bytes] = []
            head = b""
            probed = False
            size = 0
            for chunk in _inflate(fp, info, meter):
                if not probed:
                    head += chunk[: _MAGIC_PROBE_BYTES - len(head)]
                    if len(head) >= _MAGIC_PROBE_BYTES:
                        _check_magic(info.filename, head, limits)
                        probed = True
                digest.update(chunk)
                size += len(chunk)
                if feed is not None:
                    feed.feed(chunk)  # spends the chunk's bytes
                elif keep and retained_are_documents:
                    budget.spend_bytes(info.filename, len(chunk))
                if keep:
                    kept.append(chunk)
            if not probed:
                _check_magic(info.filename, head, limits)
            entries.append(ZipEntry(info.filename, size, info.compress_size, digest.hexdigest()))
            if keep:
                contents[info.filename] = b"".join(kept)
            if feed is not None:
                documents[info.filename] = feed.close()
        return ZipScan(entries=tuple(entries), contents=contents, decompressed_bytes=meter.total, documents=documents)


def _check_magic(name: str, head: bytes, limits: ZipLimits) -> None:
    kind = _archive_kind(head)
    if kind and not _is_allowed_package(name, limits):
        raise _refuse(
            PackageErrorCode.NESTED_ARCHIVE,
            f"The zip entry '{name}' is a {kind} archive inside the archive.",
            entry=name,
            archive_kind=kind,
        )


def copy_stream(source: IO[bytes], dest: IO[bytes]) -> None:
    """Copy a stream in bounded chunks."""
    shutil.copyfileobj(source, dest, READ_CHUNK_BYTES)
