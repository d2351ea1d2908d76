"""XML parsing that refuses DTDs and entities, and content hashes of parsed elements."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as DefusedElementTree
from defusedxml import DefusedXmlException

from .errors import PackageError, PackageErrorCode


def parse_xml(data: bytes, *, source: str) -> Element:
    """Parse untrusted XML; any DTD, entity declaration or external reference is refused as ``invalid_xml``."""
    try:
        root: Element = DefusedElementTree.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise PackageError(
            PackageErrorCode.INVALID_XML,
            f"{source} declares a DTD or entities, which solution files never need ({type(exc).__name__}).",
            details={"file": source},
        ) from exc
    except ParseError as exc:
        raise PackageError(
            PackageErrorCode.INVALID_XML, f"{source} is not well-formed XML ({exc}).", details={"file": source}
        ) from exc
    return root


def _put(digest: hashlib._Hash, text: str) -> None:
    encoded = text.encode("utf-8")
    digest.update(len(encoded).to_bytes(8, "big"))
    digest.update(encoded)


def update_with_element(digest: hashlib._Hash, element: Element) -> None:
    """Feed a canonical form of ``element`` into ``digest``.

    Canonical means: tag, attributes sorted by name, text with surrounding whitespace stripped, children in
    document order. So re-indenting or reordering attributes does not count as a change; reordering child elements
    does (form layouts and option lists are ordered). Iterative, so deeply nested input cannot exhaust the stack.
    """
    stack: list[tuple[Element, bool]] = [(element, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            digest.update(b"\x02")
            _put(digest, (node.tail or "").strip())
            continue
        digest.update(b"\x01")
        _put(digest, str(node.tag))
        for name, value in sorted(node.attrib.items()):
            _put(digest, name)
            _put(digest, value)
        _put(digest, (node.text or "").strip())
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node))


def content_hash(elements: Iterable[Element], files: Iterable[tuple[str, str]] = ()) -> str:
    """SHA-256 over the canonical form of ``elements`` and the (path, sha256) pairs of files they use."""
    digest = hashlib.sha256()
    for element in elements:
        update_with_element(digest, element)
    for path, file_hash in sorted(files):
        digest.update(b"\x03")
        _put(digest, path)
        _put(digest, file_hash)
    return digest.hexdigest()
