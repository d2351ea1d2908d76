"""Unpack and pack against what Microsoft's SolutionPackager really writes, and against every corpus zip.

The reference is tests/fixtures/unpack-pairs: eight solution zips beside the same version as their authors unpacked
it with ``pac solution unpack`` (ATTRIBUTION.md there). The only normalisation is the one the pairs' README allows
for files that went through Git: CRLF versus LF. Paths are compared exactly. What still differs is listed, with
its reason, in unpack-pairs/differences.json; a new difference, or one that disappears, fails here.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import zipfile
from pathlib import Path

import pytest

from alm_portal.dataverse.package import read_solution_folder, read_solution_zip
from alm_portal.dataverse.package.manifest import SolutionManifest
from alm_portal.dataverse.packager import (
    PackageType,
    compare_packages,
    content_types_xml,
    pack_files,
    pack_folder,
    read_folder,
    unpack_solution,
    write_folder,
)
from alm_portal.dataverse.packager.component_base import is_managed_twin, plain_twin_path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PAIRS = FIXTURES / "unpack-pairs"
DIFFERENCES = json.loads((PAIRS / "differences.json").read_text(encoding="utf-8"))["pairs"]
PAIR_NAMES = sorted(path.name for path in PAIRS.iterdir() if path.is_dir())
CORPUS_ZIPS = sorted(
    {
        *(FIXTURES / "corpus" / "solutions").glob("*.zip"),
        *(FIXTURES / "reference" / "solutions").glob("*.zip"),
        *PAIRS.glob("*/*.zip"),
    }
)


def _pair_zip(pair: str) -> Path:
    (found,) = (PAIRS / pair).glob("*.zip")
    return found


def _line_ends(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def _half_of_theirs(theirs: dict[str, bytes], package_type: PackageType) -> dict[str, bytes]:
    """The files of the authors' "both" folder that come from the zip the pair carries."""
    if package_type is PackageType.UNMANAGED:
        return {path: data for path, data in theirs.items() if not is_managed_twin(path)}
    twins = {plain_twin_path(path) for path in theirs if is_managed_twin(path)}
    return {path: data for path, data in theirs.items() if path not in twins}


def test_the_pairs_and_their_list_of_differences_cover_the_same_eight_solutions() -> None:
    assert len(PAIR_NAMES) == 8
    assert sorted(DIFFERENCES) == PAIR_NAMES


@pytest.mark.parametrize("pair", PAIR_NAMES)
def test_our_unpack_of_each_pair_has_the_authors_paths_and_content_except_the_listed_differences(pair: str) -> None:
    ours = unpack_solution(_pair_zip(pair))
    theirs = _half_of_theirs(read_folder(PAIRS / pair / "unpacked", _limits()), ours.package_type)

    assert sorted(ours.files) == sorted(theirs)  # exact paths, case included
    differing = {path for path in ours.files if _line_ends(ours.files[path]) != _line_ends(theirs[path])}
    assert differing == set(DIFFERENCES[pair])
    for path, listed in DIFFERENCES[pair].items():
        CHECK_KIND[listed["kind"]](ours.files[path], theirs[path])


def _same_but_managed_flag(ours: bytes, theirs: bytes) -> None:
    """Theirs says <Managed>2</Managed> (a "both" unpack); with that one value put back, the files are equal."""
    flag = re.compile(rb"<Managed>([0-2])</Managed>")
    (their_flag,) = flag.findall(theirs)
    (our_flag,) = flag.findall(ours)
    assert their_flag == b"2" and our_flag in (b"0", b"1")
    assert _line_ends(flag.sub(b"<Managed>" + our_flag + b"</Managed>", theirs)) == _line_ends(ours)


def _same_canvas_app_parts(ours: bytes, theirs: bytes) -> None:
    """Both .msapp files hold the same parts, each JSON on both sides (pac re-serialised theirs)."""
    with zipfile.ZipFile(io.BytesIO(ours)) as left, zipfile.ZipFile(io.BytesIO(theirs)) as right:
        assert sorted(left.namelist()) == sorted(right.namelist())
        for name in left.namelist():
            mine, other = left.read(name), right.read(name)
            if mine == other:
                continue
            parsed_mine, parsed_other = json.loads(mine.decode("utf-8-sig")), json.loads(other.decode("utf-8-sig"))
            if isinstance(parsed_mine, dict):
                assert set(parsed_mine) <= set(parsed_other), name


CHECK_KIND = {"both-managed-flag": _same_but_managed_flag, "msapp-reserialised": _same_canvas_app_parts}


def _limits():  # type: ignore[no-untyped-def]
    from alm_portal.dataverse.package import ZipLimits

    return ZipLimits()


def _comparable(manifest: SolutionManifest) -> SolutionManifest:
    # The file list carries every entry's bytes (re-serialised XML differs in bytes), and SolutionPackager sorts root
    # components: the rest of the manifest, every component's content hash included, must be equal.
    return dataclasses.replace(manifest, files=(), root_components=tuple(sorted(manifest.root_components, key=repr)))


def _packed_by_solution_packager(zip_path: Path) -> bool:
    with zipfile.ZipFile(zip_path) as archive:
        return b'Extension="xml" ContentType="text/xml"' in archive.read("[Content_Types].xml")


@pytest.mark.parametrize("zip_path", CORPUS_ZIPS, ids=lambda path: path.name)
def test_packing_our_unpack_of_every_corpus_zip_gives_every_entry_back(zip_path: Path) -> None:
    unpacked = unpack_solution(zip_path)
    packed = pack_files(unpacked.files)

    differences = compare_packages(zip_path, packed.data)

    # [Content_Types].xml is not kept in the folder: the packer writes it as SolutionPackager does, which is what
    # zips SolutionPackager packed hold; Dataverse's own exports type .xml parts application/octet-stream instead.
    if _packed_by_solution_packager(zip_path):
        assert differences == []
    else:
        assert [(difference.entry, difference.reason) for difference in differences] == [
            ("[Content_Types].xml", "content differs")
        ]
    assert _comparable(packed.manifest) == _comparable(read_solution_zip(zip_path))
    assert packed.package_type is unpacked.package_type


@pytest.mark.parametrize("pair", PAIR_NAMES)
def test_packing_the_authors_own_unpack_gives_their_zip_back(pair: str) -> None:
    zip_path = _pair_zip(pair)
    flavour = PackageType.MANAGED if read_solution_zip(zip_path).managed == 1 else PackageType.UNMANAGED
    packed = pack_folder(PAIRS / pair / "unpacked", package_type=flavour)

    with zipfile.ZipFile(zip_path) as original, zipfile.ZipFile(io.BytesIO(packed.data)) as ours:
        for difference in compare_packages(zip_path, packed.data):
            name = difference.entry
            if name == "[Content_Types].xml":
                assert not _packed_by_solution_packager(zip_path)
            elif name.endswith(".msapp"):
                assert name in DIFFERENCES[pair] or f"CanvasApps/{Path(name).name}" in DIFFERENCES[pair]
            else:
                # Text files their repository stores with LF line ends (which is also why their manifest's file
                # hashes differ: only the zip's entries are compared here).
                assert _line_ends(ours.read(name)) == _line_ends(original.read(name)), name


def test_a_both_unpack_of_the_two_flavours_of_one_version_packs_back_into_each_of_them() -> None:
    unmanaged = FIXTURES / "corpus" / "solutions" / "IncidentReporting_1_0_0_2.zip"
    managed = FIXTURES / "corpus" / "solutions" / "IncidentReporting_1_0_0_1_managed.zip"  # holds 1.0.0.2 as well

    both = unpack_solution(unmanaged, package_type=PackageType.BOTH, managed_source=managed)

    assert both.package_type is PackageType.BOTH
    assert b"<Managed>2</Managed>" in both.files["Other/Solution.xml"]
    assert sorted(path for path in both.files if is_managed_twin(path)) == [
        "AppModuleSiteMaps/csa_HealthandSafetyApp/AppModuleSiteMap_managed.xml",
        "AppModules/csa_HealthandSafetyApp/AppModule_managed.xml",
        "Entities/csa_csIncident/FormXml/card/{53518c77-3227-4918-b028-20b149d5ae28}_managed.xml",
        "Entities/csa_csIncident/FormXml/main/{c4e67c30-2237-4aab-943b-51150dd6f93e}_managed.xml",
        "Entities/csa_csIncident/FormXml/quick/{d4690678-1698-4ed8-b5dd-31834f7465b9}_managed.xml",
    ]
    for flavour, original in ((PackageType.UNMANAGED, unmanaged), (PackageType.MANAGED, managed)):
        packed = pack_files(both.files, package_type=flavour)
        assert [d.entry for d in compare_packages(original, packed.data)] == ["[Content_Types].xml"]
        assert read_solution_zip(packed.data).managed == (1 if flavour is PackageType.MANAGED else 0)


def test_content_types_follow_solution_packagers_rule() -> None:
    written = content_types_xml(
        [
            "customizations.xml",
            "solution.xml",
            "Workflows/a.json",
            "CanvasApps/x_BackgroundImageUri",
            "Connector/icon.Png",
            "bots/b/bot.xml",
            "Workflows/b.json",
        ]
    ).decode("utf-8")

    assert written == (
        '\ufeff<?xml version="1.0" encoding="utf-8"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="xml" ContentType="text/xml" />'
        '<Default Extension="json" ContentType="application/octet-stream" />'
        '<Default Extension="Png" ContentType="application/octet-stream" />'
        '<Override PartName="/CanvasApps/x_BackgroundImageUri" ContentType="application/octet-stream" />'
        '<Override PartName="/bots/b/bot.xml" ContentType="application/octet-stream" />'
        "</Types>"
    )


@pytest.mark.parametrize("zip_path", CORPUS_ZIPS, ids=lambda path: path.name)
def test_the_folder_reader_finds_the_same_components_in_our_unpack_as_in_the_zip(
    zip_path: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "src"
    write_folder(unpack_solution(zip_path).files, folder)

    from_folder, from_zip = read_solution_folder(folder), read_solution_zip(zip_path)

    assert (from_folder.unique_name, from_folder.version) == (from_zip.unique_name, from_zip.version)

    def keys(manifest: SolutionManifest) -> list[tuple[str, str]]:
        return sorted((str(component.kind), component.key) for component in manifest.components())

    assert keys(from_folder) == keys(from_zip)
