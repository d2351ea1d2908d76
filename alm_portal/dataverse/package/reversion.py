"""Re-versioning a solution zip: a copy in which only solution.xml's Version text differs."""

from __future__ import annotations

import os
import re
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import IO
from xml.etree.ElementTree import Element

from .errors import PackageError, PackageErrorCode
from .manifest import SolutionManifest
from .readers import read_solution_zip
from .versions import SolutionVersion
from .xmlsafe import XmlLimits, content_hash, parse_xml
from .zipsafety import (
    PackageSource,
    ZipLimits,
    copy_stream,
    entry_data_offset,
    find_root_file,
    open_checked_zip,
    open_source,
)

_CENTRAL_FIXED = 46
_SPOOL_BYTES = 64 * 1024 * 1024
_VERSION_ELEMENT = re.compile(rb"<Version\s*>([^<]*)</Version\s*>")


def _layout(message: str) -> PackageError:
    return PackageError(PackageErrorCode.UNSUPPORTED_LAYOUT, message)


def _digest_without_version(root: Element) -> str:
    version = root.find("SolutionManifest/Version")
    saved = version.text if version is not None else None
    if version is not None:
        version.text = None
    try:
        return content_hash([root])
    finally:
        if version is not None:
            version.text = saved


def replace_version_text(data: bytes, version: SolutionVersion, *, limits: XmlLimits | None = None) -> bytes:
    """Return solution.xml bytes with only the text of ``SolutionManifest/Version`` replaced.

    The document is never re-serialised, so every other byte (BOM, declaration, indentation, attribute order)
    stays. Each textual ``<Version>`` candidate is tried and the result re-parsed (defusedxml): exactly one
    candidate must yield the new version with the rest of the document unchanged, so a look-alike in a comment
    can never be the one edited.
    """
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise _layout("solution.xml is UTF-16; only UTF-8 manifests can be re-versioned in place.")
    expected = _digest_without_version(parse_xml(data, source="solution.xml", limits=limits))
    new_text = version.text.encode("ascii")
    accepted: list[bytes] = []
    for match in _VERSION_ELEMENT.finditer(data):
        content = match.group(1)
        start = match.start(1) + len(content) - len(content.lstrip())
        end = match.end(1) - (len(content) - len(content.rstrip()))
        candidate = data[:start] + new_text + data[end:]
        try:
            parsed = parse_xml(candidate, source="solution.xml", limits=limits)
        except PackageError:
            continue
        found = parsed.find("SolutionManifest/Version")
        if (
            found is not None
            and (found.text or "").strip() == version.text
            and _digest_without_version(parsed) == expected
        ):
            accepted.append(candidate)
    if len(accepted) != 1:
        raise _layout("solution.xml's SolutionManifest/Version could not be located unambiguously.")
    return accepted[0]


def _central_records(fp: IO[bytes], cd_offset: int, cd_size: int) -> list[bytearray]:
    fp.seek(cd_offset)
    directory = fp.read(cd_size)
    records: list[bytearray] = []
    position = 0
    while position < len(directory):
        name_length, extra_length, comment_length = struct.unpack_from("<3H", directory, position + 28)
        length = _CENTRAL_FIXED + name_length + extra_length + comment_length
        records.append(bytearray(directory[position : position + length]))
        position += length
    return records


def _write_reversioned(fp: IO[bytes], version: SolutionVersion, out: IO[bytes], limits: ZipLimits) -> None:
    with open_checked_zip(fp, limits) as (archive, end):
        infos = archive.infolist()
        if end.zip64 or any(0xFFFFFFFF in (info.header_offset, info.compress_size, info.file_size) for info in infos):
            raise _layout("ZIP64 solution archives cannot be re-versioned.")
        name = find_root_file((info.filename for info in infos), "solution.xml")
        target = next(info for info in infos if info.filename == name)
        new_xml = replace_version_text(archive.read(target), version, limits=limits.xml)
        new_compressed = _compress(target, new_xml)
        records = _central_records(fp, end.cd_offset, end.cd_size)
        for info, record in zip(infos, records, strict=True):
            encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
            if bytes(record[_CENTRAL_FIXED : _CENTRAL_FIXED + len(info.orig_filename.encode(encoding))]) != (
                info.orig_filename.encode(encoding)
            ):
                raise _layout("The zip archive's central directory could not be matched to its entries.")

        # Copy every local record (header, data, descriptor) verbatim, in file order; rewrite only solution.xml's.
        by_offset = sorted(infos, key=lambda info: info.header_offset)
        boundaries = [info.header_offset for info in by_offset] + [end.cd_offset]
        if boundaries != sorted(set(boundaries)):
            raise _layout("The zip archive's entries overlap; it cannot be re-versioned.")
        fp.seek(0)
        out.write(fp.read(boundaries[0]))
        new_offsets: dict[int, int] = {}
        for info, stop in zip(by_offset, boundaries[1:], strict=True):
            new_offsets[info.header_offset] = out.tell()
            if info is target:
                out.write(_rewritten_local_record(fp, info, new_xml, new_compressed))
            else:
                fp.seek(info.header_offset)
                out.write(fp.read(stop - info.header_offset))

        new_cd_offset = out.tell()
        for info, record in zip(infos, records, strict=True):
            struct.pack_into("<L", record, 42, new_offsets[info.header_offset])
            if info is target:
                struct.pack_into("<H", record, 8, info.flag_bits & ~0x08)
                struct.pack_into("<3L", record, 16, zlib.crc32(new_xml), len(new_compressed), len(new_xml))
            out.write(record)
        # Anything between the directory and its end record, then the end record with the new directory offset.
        fp.seek(end.cd_offset + end.cd_size)
        trailer = bytearray(fp.read())
        record_at = end.offset - (end.cd_offset + end.cd_size)
        struct.pack_into("<L", trailer, record_at + 16, new_cd_offset)
        out.write(trailer)


def _compress(info: zipfile.ZipInfo, data: bytes) -> bytes:
    if info.compress_type == zipfile.ZIP_STORED:
        return data
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _rewritten_local_record(fp: IO[bytes], info: zipfile.ZipInfo, new_data: bytes, compressed: bytes) -> bytes:
    data_start = entry_data_offset(fp, info)
    fp.seek(info.header_offset)
    header = bytearray(fp.read(data_start - info.header_offset))
    # Sizes go in the header itself, so a data descriptor (flag bit 3) is no longer needed.
    struct.pack_into("<H", header, 6, info.flag_bits & ~0x08)
    struct.pack_into("<3L", header, 14, zlib.crc32(new_data), len(compressed), len(new_data))
    return bytes(header) + compressed


def _check_only_version_changed(before: SolutionManifest, after: SolutionManifest, version: SolutionVersion) -> None:
    unchanged = [(file.path, file.sha256) for file in before.files if file.path.casefold() != "solution.xml"]
    rewritten = [(file.path, file.sha256) for file in after.files if file.path.casefold() != "solution.xml"]
    if (
        after.version.text != version.text
        or after.unique_name != before.unique_name
        or [file.path for file in after.files] != [file.path for file in before.files]
        or unchanged != rewritten
    ):
        raise _layout("Re-versioning would have changed more than the version; nothing was written.")


def reversion_package(
    source: PackageSource,
    new_version: str | SolutionVersion,
    dest: str | os.PathLike[str] | IO[bytes],
    *,
    limits: ZipLimits | None = None,
) -> SolutionManifest:
    """Write a copy of a solution zip whose solution.xml says ``new_version``; nothing else changes.

    Entry order, names, every other entry's bytes (compressed data included) and the archive comment are kept.
    The copy is read back and checked before anything reaches ``dest`` (a path, replaced atomically, or a
    writable binary stream). Returns the manifest of the new zip.
    """
    limits = limits or ZipLimits()
    version = new_version if isinstance(new_version, SolutionVersion) else SolutionVersion.parse(new_version)
    with open_source(source, limits) as fp, tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as out:
        before = read_solution_zip(fp, limits=limits)
        _write_reversioned(fp, version, out, limits)
        after = read_solution_zip(out, limits=limits)
        _check_only_version_changed(before, after, version)
        out.seek(0)
        if isinstance(dest, str | os.PathLike):
            target = Path(dest)
            with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as handle:
                try:
                    copy_stream(out, handle)
                except BaseException:
                    os.unlink(handle.name)
                    raise
            os.replace(handle.name, target)
        else:
            copy_stream(out, dest)
    return after
