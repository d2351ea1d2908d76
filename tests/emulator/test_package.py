"""The emulator's own solution-zip reader (no server): corpus packages, manifest rewriting, limits."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from dataverse_emulator.errors import DataverseError
from dataverse_emulator.package import parse_version, read_package, rewrite_manifest
from tests.emulator.packages import SOLUTION_DIRS, corpus, make_solution, manifest_of

ALL_ZIPS = sorted(path for directory in SOLUTION_DIRS for path in directory.glob("*.zip"))


@pytest.mark.parametrize("path", ALL_ZIPS, ids=lambda p: p.name)
def test_every_repo_zip_parses(path: Path) -> None:
    package = read_package(path.read_bytes())
    assert package.unique_name
    parse_version(package.version)
    assert package.publisher.unique_name
    assert len(package.sha256) == 64


def test_manifest_facts_of_the_corpus() -> None:
    incident = read_package(corpus("IncidentReporting_1_0_0_1_managed.zip"))
    assert (incident.unique_name, incident.version, incident.managed) == (
        "IncidentReporting",
        "1.0.0.2",
        1,
    )  # not 1.0.0.1
    assert incident.publisher.prefix == "sa"
    assert {t.logical_name for t in incident.tables if t.custom} == {"csa_csincident"}
    assert {t.logical_name for t in incident.tables if not t.custom} == {"systemuser", "team"}
    missing = read_package(corpus("MissingDependency_1_0_0_0_managed.zip")).missing_dependencies
    assert [m.required["schemaName"] for m in missing] == ["ud_testentity4", "ud_name", "ud_testentity4id"]
    assert missing[1].required_keys() == ["2:ud_testentity4.ud_name"]
    assert missing[0].required_solution == "Active"


def test_rewrite_manifest_keeps_everything_else() -> None:
    original = corpus("IncidentReporting_1_0_0_4.zip")
    rewritten = rewrite_manifest(original, managed=True, version="2.0.0.1")
    package = read_package(rewritten)
    assert (package.managed, package.version) == (1, "2.0.0.1")
    with zipfile.ZipFile(io.BytesIO(original)) as before, zipfile.ZipFile(io.BytesIO(rewritten)) as after:
        assert before.namelist() == after.namelist()
        for name in before.namelist():
            if name != "solution.xml":
                assert before.read(name) == after.read(name)
        old, new = before.read("solution.xml"), after.read("solution.xml")
        assert old.replace(b"<Managed>0</Managed>", b"<Managed>1</Managed>").replace(b"1.0.0.4", b"2.0.0.1") == new


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"not a zip", "0x80048060"),
        (make_solution("X", "1.0.0.0", omit="customizations.xml"), "0x80048060"),
        (make_solution("X", "1.0.0.0", solution_xml="<broken"), "0x8004802C"),
        (make_solution("X", "1.0.0.0", solution_xml='<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'), "0x8004802C"),
        (make_solution("X", "v1"), "0x8004801A"),
    ],
    ids=["not-zip", "missing-root-file", "bad-xml", "dtd-refused", "bad-version"],
)
def test_unreadable_packages(data: bytes, code: str) -> None:
    with pytest.raises(DataverseError) as raised:
        read_package(data)
    assert raised.value.code == code


@pytest.mark.parametrize(
    ("text", "parsed"), [("1.0.0.4", (1, 0, 0, 4)), ("1.0", (1, 0, 0, 0)), ("1.21111.1", (1, 21111, 1, 0))]
)
def test_versions(text: str, parsed: tuple[int, ...]) -> None:
    assert parse_version(text) == parsed


def test_synthetic_packages_round_trip() -> None:
    data = make_solution("Round", "3.2.1.0", managed=False, tables=("emt_round",))
    assert "<Version>3.2.1.0</Version>" in manifest_of(data)
    package = read_package(data)
    assert package.managed == 0
    assert [t.logical_name for t in package.tables] == ["emt_round"]
