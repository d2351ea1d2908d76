"""The one place where package XML is parsed: limits, refusals and content hashes of parsed elements.

Every reader of packages (zip, unpacked folder, re-versioning, and any future packer or unpacker) parses XML
with ``parse_xml`` or ``XmlFeed`` and nothing else, so the same rules hold everywhere:

- no DTD, no entity declaration, no external reference (refused as ``invalid_xml``);
- at most ``XmlLimits.max_bytes`` bytes and ``max_elements`` elements of XML per package, and ``max_depth``
  levels of nesting per document (refused as ``xml_too_large``). The parse is incremental: bytes are fed in
  chunks and counted as they arrive, so a package that passes a limit is refused as soon as it does, having
  built at most that much tree.

Why limits on elements and not only on bytes: a parsed element costs a few hundred bytes of memory however short
it is in the file (the element, its attribute dictionary, its strings), so a few MB of ``<a n="1"/>`` become
hundreds of MB of tree. The defaults are about eight times the largest real document we know of
(tests/fixtures/corpus; tests/dataverse/test_package_limits.py checks that every corpus package still reads):

    largest corpus document   customizations.xml of Power365CRMSalesSolution_1_0_0_1_managed.zip:
                              1,954,730 bytes, 30,088 elements, 20 levels deep; reading the zip peaks at 12 MiB
    limits                    16 MiB, 250,000 elements, 64 levels

so reading one package peaks at about 100 MiB in the worst case, whatever the upload holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from .errors import PackageError, PackageErrorCode

MAX_XML_BYTES = 16 * 1024 * 1024
MAX_XML_ELEMENTS = 250_000
MAX_XML_DEPTH = 64
# Bytes handed to the parser at a time: a limit is noticed within one chunk of where it is passed.
FEED_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class XmlLimits:
    """Limits of the XML in one package; tests pass small ones to stay fast.

    ``max_bytes`` and ``max_elements`` count every document a reader parses (or keeps in memory) for one package
    together, so a zip of four thousand medium documents is bounded like one large one; ``max_depth`` is per
    document.
    """

    max_bytes: int = MAX_XML_BYTES
    max_elements: int = MAX_XML_ELEMENTS
    max_depth: int = MAX_XML_DEPTH


def xml_too_large(source: str, what: str, limit: int, message: str) -> PackageError:
    return PackageError(
        PackageErrorCode.XML_TOO_LARGE, message, details={"file": source, "limit_of": what, "limit": limit}
    )


class XmlBudget:
    """What one package has used of its ``XmlLimits`` so far; readers share one across the package's documents."""

    def __init__(self, limits: XmlLimits | None = None) -> None:
        self.limits = limits or XmlLimits()
        self.bytes = 0
        self.elements = 0

    def spend_bytes(self, source: str, count: int) -> None:
        """Count ``count`` more bytes of ``source`` (parsed, or kept in memory by a reader)."""
        self.bytes += count
        if self.bytes > self.limits.max_bytes:
            raise xml_too_large(
                source,
                "bytes",
                self.limits.max_bytes,
                f"The package's XML passes {self.limits.max_bytes:,} bytes (at {source}); solution files are far "
                "smaller, so it is refused before it can exhaust memory.",
            )

    def spend_element(self, source: str) -> None:
        self.elements += 1
        if self.elements > self.limits.max_elements:
            raise xml_too_large(
                source,
                "elements",
                self.limits.max_elements,
                f"The package's XML passes {self.limits.max_elements:,} elements (at {source}); solution files have "
                "far fewer, so it is refused before it can exhaust memory.",
            )


class _CountingTarget:
    """A TreeBuilder that refuses the document as soon as the package has too many elements or it nests too deep."""

    def __init__(self, *, source: str, budget: XmlBudget) -> None:
        self._builder = TreeBuilder()
        self._source = source
        self._budget = budget
        self.depth = 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        self._budget.spend_element(self._source)
        self.depth += 1
        if self.depth > self._budget.limits.max_depth:
            raise xml_too_large(
                self._source,
                "depth",
                self._budget.limits.max_depth,
                f"{self._source} nests XML elements more than {self._budget.limits.max_depth} levels deep; solution "
                "files never do.",
            )
        return self._builder.start(tag, attrs)

    def end(self, tag: str) -> Element:
        self.depth -= 1
        return self._builder.end(tag)

    def data(self, data: str) -> None:
        self._builder.data(data)

    def close(self) -> Element:
        return self._builder.close()


class XmlFeed:
    """Incremental, defused parsing of one document: ``feed`` chunks, then ``close`` for the root element.

    For readers that produce a document in pieces (inflating a zip entry, reading a file): nothing but the
    growing tree is kept, and a limit stops the parse as soon as it is passed. Pass the package's ``budget`` so
    that its documents share the limits; without one the document has the limits to itself.
    """

    def __init__(self, *, source: str, limits: XmlLimits | None = None, budget: XmlBudget | None = None) -> None:
        self.source = source
        self.budget = budget or XmlBudget(limits)
        self._target = _CountingTarget(source=source, budget=self.budget)
        self._parser = DefusedXMLParser(
            target=self._target, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )

    def feed(self, chunk: bytes) -> None:
        self.budget.spend_bytes(self.source, len(chunk))
        with _refusals(self.source):
            self._parser.feed(chunk)

    def close(self) -> Element:
        with _refusals(self.source):
            root: Element = self._parser.close()
        return root


@contextmanager
def _refusals(source: str) -> Iterator[None]:
    """The parser's own exceptions become ``invalid_xml``; our limit refusals pass through unchanged."""
    try:
        yield
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


def parse_xml(
    data: bytes | Iterable[bytes],
    *,
    source: str,
    limits: XmlLimits | None = None,
    budget: XmlBudget | None = None,
) -> Element:
    """Parse untrusted package XML under ``limits`` (default: ``XmlLimits()``) or the package's shared ``budget``.

    ``data`` is the whole document or its chunks in order. Refusals are ``PackageError``: ``invalid_xml`` for a
    DTD, an entity, an external reference or malformed XML; ``xml_too_large`` for a passed limit.
    """
    feed = XmlFeed(source=source, limits=limits, budget=budget)
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for start in range(0, len(view), FEED_CHUNK_BYTES):
            feed.feed(bytes(view[start : start + FEED_CHUNK_BYTES]))
    else:
        for chunk in data:
            feed.feed(chunk)
    return feed.close()


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
