"""What changes between two versions of a solution, and what an upgrade to the new one would delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .manifest import Component, ComponentKind, RootComponent, SolutionManifest, Table, to_jsonable
from .versions import SolutionVersion


@dataclass(frozen=True, kw_only=True)
class ComponentRef:
    """A component named in a diff."""

    kind: ComponentKind
    key: str
    name: str


@dataclass(frozen=True, kw_only=True)
class ComponentChange:
    """A component present in both manifests whose content hash differs."""

    kind: ComponentKind
    key: str
    name: str
    old_hash: str
    new_hash: str


@dataclass(frozen=True, kw_only=True)
class DataLoss:
    """A table, or a column of a kept table, that the new version no longer has.

    An *upgrade* of a managed solution deletes such components, and with them the data they hold.
    """

    table: str
    column: str | None

    @property
    def description(self) -> str:
        """One sentence for the approval screen."""
        if self.column is None:
            return f"Table '{self.table}' is removed: upgrading deletes it and all its rows."
        return f"Column '{self.column}' of table '{self.table}' is removed: upgrading deletes its values."


@dataclass(frozen=True, kw_only=True)
class ManifestDiff:
    """Added, removed and changed components (by key and content hash; order never matters)."""

    old_version: SolutionVersion
    new_version: SolutionVersion
    added: tuple[ComponentRef, ...]
    removed: tuple[ComponentRef, ...]
    changed: tuple[ComponentChange, ...]
    root_components_added: tuple[RootComponent, ...]
    root_components_removed: tuple[RootComponent, ...]
    data_loss: tuple[DataLoss, ...]

    @property
    def is_empty(self) -> bool:
        """True when nothing was added, removed or changed."""
        return not (
            self.added
            or self.removed
            or self.changed
            or self.root_components_added
            or self.root_components_removed
            or self.data_loss
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        data: dict[str, Any] = to_jsonable(self)
        data["data_loss"] = [{**to_jsonable(item), "description": item.description} for item in self.data_loss]
        return data


def _index(manifest: SolutionManifest) -> dict[tuple[ComponentKind, str], Component]:
    return {(component.kind, component.key): component for component in manifest.components()}


def _ref(component: Component) -> ComponentRef:
    return ComponentRef(kind=component.kind, key=component.key, name=component.name)


def diff_manifests(old: SolutionManifest, new: SolutionManifest) -> ManifestDiff:
    """Compare two manifests of (normally) the same solution; ``old`` is what the target has now."""
    before, after = _index(old), _index(new)
    added = tuple(_ref(after[key]) for key in sorted(after.keys() - before.keys()))
    removed = tuple(_ref(before[key]) for key in sorted(before.keys() - after.keys()))
    changed = tuple(
        ComponentChange(
            kind=after[key].kind,
            key=after[key].key,
            name=after[key].name,
            old_hash=before[key].content_hash,
            new_hash=after[key].content_hash,
        )
        for key in sorted(before.keys() & after.keys())
        if before[key].content_hash != after[key].content_hash
    )

    old_roots = {root.identity: root for root in old.root_components}
    new_roots = {root.identity: root for root in new.root_components}

    data_loss: list[DataLoss] = []
    old_tables = {table.key: table for table in old.tables}
    new_tables = {table.key: table for table in new.tables}
    for key in sorted(old_tables.keys() - new_tables.keys()):
        data_loss.append(DataLoss(table=old_tables[key].logical_name, column=None))
    for key in sorted(old_tables.keys() & new_tables.keys()):
        data_loss.extend(_removed_columns(old_tables[key], new_tables[key]))

    return ManifestDiff(
        old_version=old.version,
        new_version=new.version,
        added=added,
        removed=removed,
        changed=changed,
        root_components_added=tuple(new_roots[key] for key in sorted(new_roots.keys() - old_roots.keys())),
        root_components_removed=tuple(old_roots[key] for key in sorted(old_roots.keys() - new_roots.keys())),
        data_loss=tuple(data_loss),
    )


def _removed_columns(old: Table, new: Table) -> list[DataLoss]:
    # A table carried as a shell (no column definitions) says nothing about its columns: no claim either way.
    if old.columns is None or new.columns is None:
        return []
    return [DataLoss(table=new.logical_name, column=column) for column in sorted(set(old.columns) - set(new.columns))]
