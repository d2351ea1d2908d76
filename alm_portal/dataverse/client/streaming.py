"""Package transfer without holding the package in memory: a base64 JSON upload body and a base64 field
decoder for export responses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from alm_portal.dataverse.errors import InvalidResponse

#: Base64 is produced from and consumed in blocks of whole 3-byte groups / 4-character quanta.
_UPLOAD_READ_SIZE = 3 * 256 * 1024  # 768 KiB of zip → 1 MiB of base64 per chunk
_MAX_JSON_PREFIX = 1024 * 1024  # bytes tolerated before the base64 field of an export response


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes unless the stream ends first (a short read mid-file would break base64 framing)."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        block = stream.read(remaining)
        if not block:
            break
        parts.append(block)
        remaining -= len(block)
    return b"".join(parts)


class Base64JsonBody:
    """A JSON request body whose one field is a file as base64, produced while the file is read.

    Yields ``prefix`` (``{"…": …, "CustomizationFile": "``), then base64 of consecutive blocks of
    ``read_size`` bytes (a multiple of 3, so the pieces concatenate into one valid base64 string), then
    ``suffix`` (``"}``). ``len()`` is known in advance, so requests sends a Content-Length instead of chunked
    framing. SHA-256 and size of the file bytes are computed on the way.
    """

    def __init__(self, prefix: bytes, path: Path, suffix: bytes, *, read_size: int = _UPLOAD_READ_SIZE) -> None:
        if read_size % 3:
            raise ValueError("read_size must be a multiple of 3")
        self.prefix = prefix
        self.path = path
        self.suffix = suffix
        self.read_size = read_size
        self.file_size = path.stat().st_size
        self.sha256: str | None = None
        self.bytes_read = 0

    def __len__(self) -> int:
        return len(self.prefix) + 4 * ((self.file_size + 2) // 3) + len(self.suffix)

    def __iter__(self) -> Iterator[bytes]:
        digest = hashlib.sha256()
        self.bytes_read = 0
        yield self.prefix
        with self.path.open("rb") as stream:
            while True:
                block = _read_exact(stream, self.read_size)
                if not block:
                    break
                digest.update(block)
                self.bytes_read += len(block)
                yield base64.b64encode(block)
                if len(block) < self.read_size:
                    break
        if self.bytes_read != self.file_size:
            raise OSError(f"{self.path} changed size while it was being sent ({self.file_size} → {self.bytes_read})")
        self.sha256 = digest.hexdigest()
        yield self.suffix


def base64_json_body(
    fields: Mapping[str, Any], file_field: str, path: Path, *, read_size: int = _UPLOAD_READ_SIZE
) -> Base64JsonBody:
    """Build a :class:`Base64JsonBody` for ``{**fields, file_field: base64(file)}``."""
    head = json.dumps(dict(fields), separators=(",", ":"), ensure_ascii=True)
    assert head.endswith("}")
    opening = head[:-1] + ("," if fields else "") + json.dumps(file_field) + ':"'
    return Base64JsonBody(opening.encode("ascii"), path, b'"}', read_size=read_size)


class _Base64FieldWriter:
    """Decode the base64 string value of one JSON field to a file while the JSON arrives in chunks.

    Only the field's value is decoded; bytes before it are kept (bounded) until the key is found, bytes after
    its closing quote are ignored. JSON escapes inside a base64 string can only be ``\\/`` (and, from some
    serialisers, ``\\r``/``\\n`` line breaks); anything else is an invalid response.
    """

    def __init__(self, field_name: str, out: BinaryIO) -> None:
        self._pattern = re.compile(rb'"' + re.escape(field_name.encode("ascii")) + rb'"\s*:\s*"')
        self._null_pattern = re.compile(rb'"' + re.escape(field_name.encode("ascii")) + rb'"\s*:\s*null')
        self._field_name = field_name
        self._out = out
        self._state = "seek"
        self._pending = b""  # undecoded base64 text (len < 4) or unscanned prefix
        self._escape = b""
        self._digest = hashlib.sha256()
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        if self._state == "seek":
            self._pending += chunk
            match = self._pattern.search(self._pending)
            if match is None:
                if self._null_pattern.search(self._pending):
                    raise InvalidResponse(f"{self._field_name} is null")
                if len(self._pending) > _MAX_JSON_PREFIX:
                    raise InvalidResponse(f"{self._field_name} not found in the first {_MAX_JSON_PREFIX} bytes")
                return
            rest = self._pending[match.end() :]
            self._pending = b""
            self._state = "value"
            chunk = rest
        if self._state == "value":
            self._feed_value(chunk)

    def _feed_value(self, chunk: bytes) -> None:
        data = self._escape + chunk
        self._escape = b""
        end = data.find(b'"')
        if end >= 0:
            value, self._state = data[:end], "done"
        else:
            value = data
            if value.endswith(b"\\"):
                value, self._escape = value[:-1], b"\\"
        if b"\\" in value:
            value = value.replace(b"\\/", b"/").replace(b"\\r", b"").replace(b"\\n", b"")
            if b"\\" in value:
                raise InvalidResponse(f"unexpected JSON escape in {self._field_name}")
        text = self._pending + value
        usable = len(text) - len(text) % 4
        if self._state == "done":
            usable = len(text)
        if usable:
            self._write(text[:usable])
        self._pending = text[usable:]

    def _write(self, text: bytes) -> None:
        try:
            data = base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise InvalidResponse(f"{self._field_name} is not valid base64: {exc}") from exc
        self._digest.update(data)
        self.size += len(data)
        self._out.write(data)

    def finish(self) -> str:
        if self._state != "done":
            raise InvalidResponse(f"the response ended before {self._field_name} was complete")
        return self._digest.hexdigest()
