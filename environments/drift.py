"""Drift: what is installed compared with what the portal deployed. Pure functions, no database.

services.environment_sync_inventory() feeds them the synced inventory, the expected installations
(selectors.expected_installations) and the registered solution names, then stores the findings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from environments.choices import DriftKind, EnvironmentKind

HOLDING_SUFFIX = "_Upgrade"
# Solutions every environment lists (the platform's own), never "unregistered".
SYSTEM_SOLUTIONS = frozenset({"default", "active", "basic", "system"})
PLATFORM_PUBLISHER_PREFIXES = ("microsoft",)
# Environments where a solution nobody registered means someone installed it outside the portal;
# in development, makers create solutions all the time.
GOVERNED_KINDS = frozenset({EnvironmentKind.TEST, EnvironmentKind.PRODUCTION})


@dataclass(frozen=True)
class Installed:
    """One installed solution as the inventory knows it."""

    unique_name: str
    version: str
    is_managed: bool
    publisher: str = ""
    installed_on: datetime | None = None


@dataclass(frozen=True)
class Expected:
    """What the portal deployed: version and flavour.

    While the portal's own promotion of the solution runs on the environment, what it is doing is not
    drift: `also_accepted` holds the version it installs, `may_be_absent` says it may leave the solution
    absent for a while (a first install, an uninstall before a reinstall), and `any_version` that the
    version it leaves is only known afterwards (applying a holding solution).
    """

    version: str
    is_managed: bool
    also_accepted: tuple[str, ...] = ()
    may_be_absent: bool = False
    any_version: bool = False

    def accepts(self, installed_version: str) -> bool:
        if self.any_version:
            return True
        wanted = {version_key(self.version), *(version_key(version) for version in self.also_accepted)}
        return version_key(installed_version) in wanted


@dataclass(frozen=True)
class Finding:
    kind: str
    unique_name: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.unique_name)


def version_key(version: str) -> tuple[int, ...]:
    """`1.10` → (1, 10, 0, 0): numeric, padded to four parts, so 1.10.0.0 > 1.9.0.0 and 1.0 == 1.0.0.0."""
    parts = [int(piece) if piece.isdigit() else 0 for piece in re.split(r"[.]", version.strip()) if piece != ""]
    return tuple([*parts, 0, 0, 0, 0][:4]) if len(parts) <= 4 else tuple(parts)


def compute_drift(
    *,
    installed: Mapping[str, Installed],
    expected: Mapping[str, Expected],
    registered: set[str] | None,
    environment_kind: str,
    now: datetime,
    holding_grace: timedelta,
) -> list[Finding]:
    """Every drift finding for one environment, in a stable order.

    - version_changed: a deployed solution is installed in another version than the portal put there
      (or is putting there right now: see Expected).
    - missing: a deployed solution is not installed any more (and no promotion under way may remove it).
    - unmanaged: the portal deployed it managed, the environment has it unmanaged.
    - holding_stuck: a `<name>_Upgrade` holding solution older than `holding_grace` (a staged
      upgrade that was never applied); needs no expectations.
    - unregistered: in test and production environments, a solution the registry does not know
      (`registered` is None while the registry does not exist: the kind is skipped). Platform
      solutions (Microsoft publishers, Default/Active/Basic/System) and holding solutions are ignored.
    """
    findings: list[Finding] = []
    by_lower = {name.lower(): item for name, item in installed.items()}
    for name, want in sorted(expected.items()):
        have = by_lower.get(name.lower())
        if have is None:
            if want.may_be_absent:
                continue
            findings.append(
                Finding(
                    DriftKind.MISSING,
                    name,
                    {"expected_version": want.version, "expected_managed": want.is_managed},
                )
            )
            continue
        if want.is_managed and not have.is_managed:
            findings.append(
                Finding(
                    DriftKind.UNMANAGED,
                    name,
                    {"expected_version": want.version, "installed_version": have.version, "installed_managed": False},
                )
            )
        elif not want.accepts(have.version):
            findings.append(
                Finding(
                    DriftKind.VERSION_CHANGED,
                    name,
                    {"expected_version": want.version, "installed_version": have.version},
                )
            )
    for name, have in sorted(installed.items()):
        if not name.endswith(HOLDING_SUFFIX):
            continue
        if have.installed_on is not None and now - have.installed_on < holding_grace:
            continue
        base = by_lower.get(name[: -len(HOLDING_SUFFIX)].lower())
        findings.append(
            Finding(
                DriftKind.HOLDING_STUCK,
                name,
                {
                    "holding_version": have.version,
                    "base_solution": name[: -len(HOLDING_SUFFIX)],
                    "base_version": base.version if base else None,
                    "installed_on": have.installed_on.isoformat() if have.installed_on else None,
                },
            )
        )
    if registered is not None and environment_kind in GOVERNED_KINDS:
        known = {name.lower() for name in registered} | {name.lower() for name in expected}
        for name, have in sorted(installed.items()):
            lowered = name.lower()
            if lowered in known or lowered in SYSTEM_SOLUTIONS or name.endswith(HOLDING_SUFFIX):
                continue
            if have.publisher.lower().startswith(PLATFORM_PUBLISHER_PREFIXES):
                continue
            findings.append(
                Finding(
                    DriftKind.UNREGISTERED,
                    name,
                    {
                        "installed_version": have.version,
                        "installed_managed": have.is_managed,
                        "publisher": have.publisher,
                    },
                )
            )
    return findings
