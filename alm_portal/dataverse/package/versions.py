"""Solution version numbers: parsing, ordering, equivalence and bumping."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from .errors import PackageError, PackageErrorCode

# Dataverse documents ``major.minor.build.revision`` (docs/dataverse.md §11.3) but real exports hold 2- and 3-part
# versions too (StartMenu 1.4, QuoteLineEditor 0.1.0) and zero-padded parts in on-premises builds (8.1.0000.0240).
_VERSION_RE = re.compile(r"^[0-9]+(?:\.[0-9]+){1,3}$")

# .NET System.Version stores each part as an Int32; the per-part maximum Dataverse accepts is UNCONFIRMED
# (docs/dataverse.md §11.3), so we accept what System.Version can hold and nothing larger.
MAX_VERSION_PART = 2**31 - 1


class VersionPart(StrEnum):
    """Which part ``SolutionVersion.bump`` increments; the parts to its right are reset to 0."""

    MAJOR = "major"
    MINOR = "minor"
    BUILD = "build"
    REVISION = "revision"


_PART_INDEX = {VersionPart.MAJOR: 0, VersionPart.MINOR: 1, VersionPart.BUILD: 2, VersionPart.REVISION: 3}


@dataclass(frozen=True, eq=False)
class SolutionVersion:
    """A solution version as written in solution.xml (``text``) and as numbers (``parts``).

    Ordering pads missing parts with 0, so 1.4 < 1.4.1 < 1.5.0.0. Equality is decided by
    ``versions_equivalent`` and nowhere else.
    """

    text: str
    parts: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> SolutionVersion:
        """Parse a 2- to 4-part version; raise ``PackageError(invalid_version)`` for anything else."""
        stripped = text.strip()
        if not _VERSION_RE.fullmatch(stripped):
            raise PackageError(
                PackageErrorCode.INVALID_VERSION,
                f"'{text}' is not a solution version; expected 2 to 4 numbers separated by dots, like 1.0.0.0.",
                details={"version": text},
            )
        parts = tuple(int(part) for part in stripped.split("."))
        if any(part > MAX_VERSION_PART for part in parts):
            raise PackageError(
                PackageErrorCode.INVALID_VERSION,
                f"'{text}' has a part larger than {MAX_VERSION_PART}.",
                details={"version": text},
            )
        return cls(text=stripped, parts=parts)

    @property
    def padded(self) -> tuple[int, int, int, int]:
        """The four parts, missing ones as 0."""
        major, minor, build, revision = (*self.parts, 0, 0, 0, 0)[:4]
        return (major, minor, build, revision)

    @property
    def canonical(self) -> str:
        """The four-part form, without zero padding inside parts: ``1.4`` -> ``1.4.0.0``."""
        return ".".join(str(part) for part in self.padded)

    def bump(self, part: VersionPart | str) -> SolutionVersion:
        """Return the next version: ``part`` + 1 and every part to its right 0, always in four-part form."""
        index = _PART_INDEX[VersionPart(part)]
        padded = list(self.padded)
        padded[index] += 1
        for right in range(index + 1, 4):
            padded[right] = 0
        return SolutionVersion.parse(".".join(str(number) for number in padded))

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SolutionVersion):
            return NotImplemented
        return versions_equivalent(self, other)

    def __hash__(self) -> int:
        # Consistent with versions_equivalent: equivalent versions share a padded form.
        return hash(self.padded)

    def __lt__(self, other: SolutionVersion) -> bool:
        return self.padded < other.padded

    def __le__(self, other: SolutionVersion) -> bool:
        return self.padded <= other.padded

    def __gt__(self, other: SolutionVersion) -> bool:
        return self.padded > other.padded

    def __ge__(self, other: SolutionVersion) -> bool:
        return self.padded >= other.padded


def versions_equivalent(a: SolutionVersion, b: SolutionVersion) -> bool:
    """Whether Dataverse treats two versions as the same version (e.g. for "must be higher" upgrade checks).

    UNCONFIRMED: whether Dataverse considers ``1.4`` equal to ``1.4.0.0`` is not documented (docs/dataverse.md
    §11.3). We decide "yes, missing parts are 0", which matches how we order versions. Note that .NET
    ``System.Version`` would instead order ``1.4`` *below* ``1.4.0.0`` (undefined parts are -1); if that turns
    out to be what Dataverse does, change this function and the ordering methods of ``SolutionVersion`` together.
    """
    return a.padded == b.padded
