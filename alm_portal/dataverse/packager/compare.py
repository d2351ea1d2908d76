"""Comparing two solution zips entry by entry, XML canonically.

Canonical means what Dataverse reads, not how the bytes look: indentation, attribute order, the XML declaration,
byte order marks and CRLF versus LF do not count; element order does, except in lists Dataverse treats as sets and
SolutionPackager's folder layout does not keep in order: the components in each collection of customizations.xml,
a table's forms and views, a model-driven app's component list, solution.xml's root components and missing
dependencies, and the entries of [Content_Types].xml.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from ..package.errors import PackageError
from ..package.xmlsafe import parse_xml
from ..package.zipsafety import PackageSource, ZipLimits, scan_zip

UnorderedRule = Callable[[tuple[str, ...]], bool]

_ENTITY_SETS = {
    ("ImportExportXml", "Entities", "Entity", "FormXml"),
    ("ImportExportXml", "Entities", "Entity", "FormXml", "forms"),
    ("ImportExportXml", "Entities", "Entity", "SavedQueries", "savedqueries"),
    ("ImportExportXml", "AppModules", "AppModule", "AppModuleComponents"),
}
_SOLUTION_SETS = {
    ("ImportExportXml", "SolutionManifest", "RootComponents"),
    ("ImportExportXml", "SolutionManifest", "MissingDependencies"),
}


def _customizations_rule(path: tuple[str, ...]) -> bool:
    return len(path) == 2 or path in _ENTITY_SETS


def _solution_rule(path: tuple[str, ...]) -> bool:
    return path in _SOLUTION_SETS


def _content_types_rule(path: tuple[str, ...]) -> bool:
    return len(path) == 1


def _never(path: tuple[str, ...]) -> bool:
    return False


def unordered_rule(entry: str) -> UnorderedRule:
    return {
        "customizations.xml": _customizations_rule,
        "solution.xml": _solution_rule,
        "[content_types].xml": _content_types_rule,
    }.get(entry.casefold(), _never)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def canonical_xml(element: Element, unordered: UnorderedRule = _never) -> str:
    """A digest that is equal for two elements exactly when Dataverse reads them alike (see the module docstring)."""

    def walk(node: Element, path: tuple[str, ...]) -> str:
        children = [walk(child, (*path, _local(str(child.tag)))) for child in node]
        if unordered(path):
            children.sort()
        digest = hashlib.sha256()
        for part in (
            str(node.tag),
            json.dumps(sorted((str(name), value) for name, value in node.attrib.items()), ensure_ascii=False),
            (node.text or "").strip(),
            *children,
            (node.tail or "").strip(),
        ):
            encoded = part.encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "big") + encoded)
        return digest.hexdigest()

    return walk(element, (_local(str(element.tag)),))


@dataclass(frozen=True)
class EntryDifference:
    """One entry that is not equal in two packages."""

    entry: str
    reason: str


def _is_xml(name: str) -> bool:
    return name.casefold().endswith(".xml")


def compare_packages(
    first: PackageSource, second: PackageSource, *, limits: ZipLimits | None = None
) -> list[EntryDifference]:
    """Every entry that differs between two zips (read under the package limits); an empty list means equal."""
    left = scan_zip(first, limits=limits, retain=lambda name: True).contents
    right = scan_zip(second, limits=limits, retain=lambda name: True).contents
    differences = [EntryDifference(name, "only in the first package") for name in left if name not in right]
    differences += [EntryDifference(name, "only in the second package") for name in right if name not in left]
    for name in left:
        if name not in right or left[name] == right[name]:
            continue
        if _is_xml(name):
            try:
                rule = unordered_rule(name)
                same = canonical_xml(parse_xml(left[name], source=name), rule) == canonical_xml(
                    parse_xml(right[name], source=name), rule
                )
            except (PackageError, RecursionError):
                same = False
            if same:
                continue
        differences.append(EntryDifference(name, "content differs"))
    return sorted(differences, key=lambda difference: difference.entry.casefold())
