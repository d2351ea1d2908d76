"""XML documents kept as written, and written back the way SolutionPackager writes them.

SolutionPackager (``pac solution unpack``) loads each XML part with .NET's LINQ to XML and saves every file it
writes through an indenting ``XmlWriter``: UTF-8 with a byte order mark, the declaration
``<?xml version="1.0" encoding="utf-8"?>``, CRLF line ends, two spaces per level, ``<x />`` for an element that
was written empty and ``<x></x>`` for one written with an end tag, whitespace-only text dropped, no indentation
inside an element once text has been written in it, and no newline after the last tag. To write byte for byte what
it writes, a tree has to remember what ElementTree forgets: prefixes and namespace declarations as written, the
order of attributes, empty-tag syntax, comments and processing instructions.

Every document is first parsed by the package reader's safe parser (``alm_portal.dataverse.package.xmlsafe
.parse_xml``): that call refuses DTDs and entity declarations and applies the package limits on XML, so nothing
reaches the scanner below that the product would not accept in an upload. The scanner then reads the same,
now known well-formed and DTD-free, text once more for the lexical details; its tree is checked against the
parser's (same canonical content hash) before it is used, so a disagreement is an error, never a silent change.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeAlias
from xml.etree.ElementTree import Element as EtElement

from ..package.errors import PackageError, PackageErrorCode
from ..package.xmlsafe import content_hash, parse_xml

XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"
XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"
DECLARATION = '<?xml version="1.0" encoding="utf-8"?>'
NEWLINE = "\r\n"
INDENT = "  "
_BOM = "\ufeff"


@dataclass(eq=False)
class Text:
    """Character data (CDATA sections are kept as such)."""

    value: str
    cdata: bool = False


@dataclass(eq=False)
class Comment:
    value: str


@dataclass(eq=False)
class ProcessingInstruction:
    target: str
    data: str


@dataclass(eq=False)
class Element:
    """An element as written: qualified name, attributes in document order (namespace declarations included)."""

    name: str
    attributes: list[tuple[str, str]] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    # ``<x/>`` in the source (or in what we build); ``<x></x>`` otherwise. LINQ to XML keeps the difference.
    self_closing: bool = True

    @property
    def local_name(self) -> str:
        return self.name.rpartition(":")[2]

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.attributes:
            if key == name:
                return value
        return default

    def set(self, name: str, value: str) -> None:
        for index, (key, _) in enumerate(self.attributes):
            if key == name:
                self.attributes[index] = (name, value)
                return
        self.attributes.append((name, value))

    def elements(self, name: str | None = None) -> Iterator[Element]:
        for child in self.children:
            if isinstance(child, Element) and (name is None or child.name == name):
                yield child

    def find(self, path: str) -> Element | None:
        """The first element at a slash-separated path of child names, or None."""
        found: Element | None = self
        for step in path.split("/"):
            found = next(found.elements(step), None) if found is not None else None
        return found

    def text(self) -> str:
        """Concatenated direct character data (comments skipped), as ElementTree's ``text`` would give it."""
        return "".join(child.value for child in self.children if isinstance(child, Text))

    def child_text(self, path: str) -> str | None:
        found = self.find(path)
        return found.text().strip() if found is not None else None

    def copy(self) -> Element:
        return Element(
            self.name,
            list(self.attributes),
            [child.copy() if isinstance(child, Element) else child for child in self.children],
            self.self_closing,
        )

    def emptied(self) -> Element:
        """A copy without content, written ``<x />`` as SolutionPackager leaves a collection it split out."""
        return Element(self.name, list(self.attributes), [], True)


Node: TypeAlias = Element | Text | Comment | ProcessingInstruction


@dataclass(eq=False)
class Document:
    """A whole XML file: the root element plus comments or processing instructions around it."""

    root: Element
    prolog: list[Node] = field(default_factory=list)
    epilog: list[Node] = field(default_factory=list)


# ---- reading ---------------------------------------------------------------------------------------------------

_NAME = re.compile(r"[^\s/>=<\"']+")
_SPACE = re.compile(r"[ \t\n]*")
_REFERENCE = re.compile(r"&(#x[0-9A-Fa-f]+|#[0-9]+|lt|gt|amp|quot|apos);")
_ENCODING = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_PI = re.compile(r"([^ \t\n]*)[ \t\n]*(.*)", re.DOTALL)
_PREDEFINED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


def _invalid(source: str, problem: str) -> PackageError:
    return PackageError(PackageErrorCode.INVALID_XML, f"{source}: {problem}.", details={"file": source})


def _decode_references(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("#x"):
            return chr(int(name[2:], 16))
        if name.startswith("#"):
            return chr(int(name[1:]))
        return _PREDEFINED[name]

    return _REFERENCE.sub(replace, text) if "&" in text else text


def decode_xml_bytes(data: bytes, *, source: str) -> str:
    """The text of an XML file: byte order mark or declared encoding (UTF-8 by default), line ends normalised."""
    if data.startswith(codecs.BOM_UTF8):
        encoding, data = "utf-8", data[3:]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        declared = _ENCODING.match(data)
        encoding = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        text = data.decode(encoding)
    except (LookupError, UnicodeDecodeError) as exc:
        raise _invalid(source, f"cannot be decoded as {encoding} ({exc})") from exc
    text = text.removeprefix(_BOM)
    # XML 1.0 section 2.11: every CRLF and lone CR is read as LF.
    return text.replace("\r\n", "\n").replace("\r", "\n")


class _Scanner:
    """Lexical pass over text that expat has already accepted: tags, character data, comments, PIs."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.pos = 0

    def _until(self, marker: str) -> str:
        end = self.text.find(marker, self.pos)
        if end < 0:
            raise _invalid(self.source, f"unterminated markup at offset {self.pos}")
        value = self.text[self.pos : end]
        self.pos = end + len(marker)
        return value

    def _name(self) -> str:
        match = _NAME.match(self.text, self.pos)
        if not match:
            raise _invalid(self.source, f"expected a name at offset {self.pos}")
        self.pos = match.end()
        return match.group(0)

    def _skip_space(self) -> None:
        self.pos = _SPACE.match(self.text, self.pos).end()  # type: ignore[union-attr]

    def _start_tag(self) -> tuple[str, list[tuple[str, str]], bool]:
        name = self._name()
        attributes: list[tuple[str, str]] = []
        while True:
            self._skip_space()
            if self.text.startswith("/>", self.pos):
                self.pos += 2
                return name, attributes, True
            if self.text.startswith(">", self.pos):
                self.pos += 1
                return name, attributes, False
            attribute = self._name()
            self._skip_space()
            self.pos += 1  # "="
            self._skip_space()
            quote = self.text[self.pos]
            self.pos += 1
            raw = self._until(quote)
            # XML 1.0 section 3.3.3: without a DTD every attribute is CDATA; literal white space becomes a space.
            normalised = raw.replace("\t", " ").replace("\n", " ")
            attributes.append((attribute, _decode_references(normalised)))

    def document(self) -> Document:
        stack: list[Element] = []
        prolog: list[Node] = []
        epilog: list[Node] = []
        root: Element | None = None
        text = self.text

        def add(node: Node) -> None:
            if stack:
                stack[-1].children.append(node)
            elif root is None:
                prolog.append(node)
            else:
                epilog.append(node)

        while self.pos < len(text):
            if text.startswith("<?", self.pos):
                self.pos += 2
                body = self._until("?>")
                target, data = _PI.match(body).groups()  # type: ignore[union-attr]
                if target.lower() == "xml" and root is None and not stack and not prolog:
                    continue  # the declaration: we always write our own
                add(ProcessingInstruction(target, data.rstrip()))
            elif text.startswith("<!--", self.pos):
                self.pos += 4
                add(Comment(self._until("-->")))
            elif text.startswith("<![CDATA[", self.pos):
                self.pos += 9
                add(Text(self._until("]]>"), cdata=True))
            elif text.startswith("<!", self.pos):
                raise _invalid(self.source, "declares a DTD, which solution files never need")
            elif text.startswith("</", self.pos):
                self.pos += 2
                self._name()
                self._until(">")
                stack.pop()
            elif text.startswith("<", self.pos):
                self.pos += 1
                name, attributes, closed = self._start_tag()
                element = Element(name, attributes, [], closed)
                if not stack and root is None:
                    root = element
                else:
                    add(element)
                if not closed:
                    stack.append(element)
            else:
                end = text.find("<", self.pos)
                end = len(text) if end < 0 else end
                raw = text[self.pos : end]
                self.pos = end
                if stack:
                    add(Text(_decode_references(raw)))
        if root is None or stack:
            raise _invalid(self.source, "has no complete root element")
        return Document(root, prolog, epilog)


def to_etree(element: Element) -> EtElement:
    """The ElementTree form of ``element`` (``{namespace}local`` names), to compare with what the parser built."""

    def resolve(name: str, scope: dict[str, str], attribute: bool) -> str:
        prefix, colon, local = name.rpartition(":")
        if not colon:
            uri = "" if attribute else scope.get("", "")
        elif prefix == "xml":
            uri = XML_NAMESPACE
        else:
            uri = scope.get(prefix, "")
        return f"{{{uri}}}{local}" if uri else local

    def build(node: Element, outer: dict[str, str]) -> EtElement:
        scope = dict(outer)
        for key, value in node.attributes:
            if key == "xmlns":
                scope[""] = value
            elif key.startswith("xmlns:"):
                scope[key[6:]] = value
        result = EtElement(resolve(node.name, scope, False))
        for key, value in node.attributes:
            if key != "xmlns" and not key.startswith("xmlns:"):
                result.set(resolve(key, scope, True), value)
        last: EtElement | None = None
        for child in node.children:
            if isinstance(child, Text):
                if last is None:
                    result.text = (result.text or "") + child.value
                else:
                    last.tail = (last.tail or "") + child.value
            elif isinstance(child, Element):
                last = build(child, scope)
                result.append(last)
        return result

    return build(element, {})


def parse_document(data: bytes, *, source: str) -> Document:
    """Parse one XML file safely (limits, no DTD) and keep everything SolutionPackager would write back."""
    # parse_xml refuses documents nested deeper than the package limit (64 levels), so the trees below, walked
    # recursively (copy, write, compare), never come near the interpreter's recursion limit.
    parsed = parse_xml(data, source=source)
    document = _Scanner(decode_xml_bytes(data, source=source), source).document()
    if content_hash([to_etree(document.root)]) != content_hash([parsed]):
        raise _invalid(source, "could not be read consistently (the lexical and the XML parser disagree)")
    return document


# ---- writing ---------------------------------------------------------------------------------------------------


def _escape_text(value: str) -> str:
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # XmlWriter writes a line end in text as CRLF; a lone CR (only possible as &#xD;) is kept as a reference.
    return value.replace("\r", "&#xD;").replace("\n", NEWLINE)


def _escape_attribute(value: str) -> str:
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\r", "&#xD;")
        .replace("\n", "&#xA;")
        .replace("\t", "&#x9;")
    )


def _is_whitespace(value: str) -> bool:
    return value.strip(" \t\n\r") == ""


@dataclass(frozen=True)
class WriteStyle:
    """How one kind of file is written; SolutionPackager does not write all of them alike."""

    # Canvas app, connector and model-driven app files get an end tag on every empty child of their root
    # (``<Publisher></Publisher>`` where customizations.xml has ``<Publisher />``); deeper elements keep their form.
    empty_root_children_with_end_tag: bool = False


DEFAULT_STYLE = WriteStyle()


class _Writer:
    def __init__(self, style: WriteStyle) -> None:
        self.style = style
        self.parts: list[str] = []

    def newline(self, level: int) -> None:
        self.parts.append(NEWLINE + INDENT * level)

    def misc(self, node: Comment | ProcessingInstruction) -> None:
        if isinstance(node, Comment):
            self.parts.append(f"<!--{node.value}-->")
        else:
            self.parts.append(f"<?{node.target} {node.data}?>" if node.data else f"<?{node.target}?>")

    def element(self, element: Element, level: int, mixed: bool, preserve: bool) -> None:
        if not mixed:
            self.newline(level)
        self.parts.append("<" + element.name)
        for key, value in element.attributes:
            self.parts.append(f' {key}="{_escape_attribute(value)}"')
            if key == "xml:space":
                preserve = value == "preserve"
        # LINQ to XML drops whitespace-only text unless xml:space="preserve" is in force.
        children = [
            child
            for child in element.children
            if not (isinstance(child, Text) and not child.cdata and not preserve and _is_whitespace(child.value))
        ]
        if not children:
            if element.self_closing and not (level == 1 and self.style.empty_root_children_with_end_tag):
                self.parts.append(" />")
            else:
                self.parts.append(f"></{element.name}>")
            return
        self.parts.append(">")
        inner_mixed = mixed
        for child in children:
            if isinstance(child, Text):
                self.parts.append(f"<![CDATA[{child.value}]]>" if child.cdata else _escape_text(child.value))
                inner_mixed = True
            elif isinstance(child, Element):
                self.element(child, level + 1, inner_mixed, preserve)
            else:
                if not inner_mixed:
                    self.newline(level + 1)
                self.misc(child)
        if not inner_mixed:
            self.newline(level)
        self.parts.append(f"</{element.name}>")


def write_document(document: Document | Element, *, style: WriteStyle = DEFAULT_STYLE) -> bytes:
    """Serialise as SolutionPackager's ``XmlWriter`` does (see the module docstring)."""
    if isinstance(document, Element):
        document = Document(document)
    writer = _Writer(style)
    writer.parts.append(_BOM + DECLARATION)
    for node in document.prolog:
        if isinstance(node, Comment | ProcessingInstruction):
            writer.newline(0)
            writer.misc(node)
    writer.element(document.root, 0, False, False)
    for node in document.epilog:
        if isinstance(node, Comment | ProcessingInstruction):
            writer.newline(0)
            writer.misc(node)
    return "".join(writer.parts).encode("utf-8")


def with_namespace_declarations(element: Element, declarations: list[tuple[str, str]]) -> Element:
    """A shallow copy of ``element`` with namespace declarations appended after its own attributes.

    SolutionPackager writes each component it splits out as a document of its own and declares there the
    namespaces the component's ancestors declared (``xmlns:xsi`` on customizations.xml's root, in practice).
    """
    present = {key for key, _ in element.attributes}
    extra = [(key, value) for key, value in declarations if key not in present]
    return Element(element.name, [*element.attributes, *extra], element.children, element.self_closing)


def namespace_declarations(element: Element) -> list[tuple[str, str]]:
    return [(key, value) for key, value in element.attributes if key == "xmlns" or key.startswith("xmlns:")]


def without_namespace_declarations(element: Element, declarations: list[tuple[str, str]]) -> Element:
    """Undo :func:`with_namespace_declarations` when a split file is put back under its collection."""
    inherited = set(declarations)
    kept = [(key, value) for key, value in element.attributes if (key, value) not in inherited]
    return Element(element.name, kept, element.children, element.self_closing)
