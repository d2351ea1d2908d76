"""solution_unpack and solution_pack: real processes with no database reachable, and bad input refused cleanly.

Every command runs as ``python manage.py ...`` with DATABASE_URL pointing at a closed port, so a command that
touched the database would fail; one test shows that a command that does need it fails in that environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from alm_portal.dataverse.package import read_solution_zip
from alm_portal.dataverse.packager import compare_packages

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = ROOT / "tests" / "fixtures" / "corpus" / "solutions"
PAIRS = ROOT / "tests" / "fixtures" / "unpack-pairs"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once the socket is closed


@pytest.fixture(scope="module")
def no_database_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ALM_", "DATABASE_URL", "REDIS"))}
    env.update(
        {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{_closed_port()}/no_such_database",
            "ALM_VAR_DIR": str(tmp_path_factory.mktemp("var")),
            "DJANGO_SETTINGS_MODULE": "alm_portal.settings",
        }
    )
    return env


def _manage(env: dict[str, str], *arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *map(str, arguments)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_environment_really_has_no_database(no_database_env: dict[str, str]) -> None:
    needs_database = _manage(no_database_env, "showmigrations", "solutions")

    assert needs_database.returncode != 0
    assert "connection" in needs_database.stderr.lower()


def test_unpack_then_pack_without_a_database(no_database_env: dict[str, str], tmp_path: Path) -> None:
    source = PAIRS / "PromptWagon" / "prompt-wagon.zip"
    folder, packed = tmp_path / "src", tmp_path / "out" / "prompt-wagon.zip"

    unpacked = _manage(no_database_env, "solution_unpack", source, folder)
    assert unpacked.returncode == 0, unpacked.stderr
    assert unpacked.stdout.strip() == f"Unpacked PromptWagon 1.0.0.4 (unmanaged) into {folder}: 70 files."
    assert (folder / "Other" / "Solution.xml").is_file() and (
        folder / "Connectors" / "archer_5Fpromptwagon.xml"
    ).is_file()

    repacked = _manage(no_database_env, "solution_pack", folder, packed)
    assert repacked.returncode == 0, repacked.stderr
    assert repacked.stdout.startswith(f"Packed PromptWagon 1.0.0.4 (unmanaged) into {packed}: ")
    assert compare_packages(source, packed) == []  # SolutionPackager packed this zip: even content types agree


def test_both_flavours_through_the_commands(no_database_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "both"
    unpacked = _manage(
        no_database_env,
        "solution_unpack",
        SOLUTIONS / "IncidentReporting_1_0_0_2.zip",
        folder,
        "--managed-zip",
        SOLUTIONS / "IncidentReporting_1_0_0_1_managed.zip",
    )
    assert unpacked.returncode == 0, unpacked.stderr
    assert "(both)" in unpacked.stdout

    default = _manage(no_database_env, "solution_pack", folder, tmp_path / "default.zip")
    managed = _manage(no_database_env, "solution_pack", folder, tmp_path / "managed.zip", "--package-type", "managed")
    assert default.returncode == 0 and managed.returncode == 0, default.stderr + managed.stderr
    assert read_solution_zip(tmp_path / "default.zip").managed == 0  # a "both" folder packs unmanaged by default
    assert read_solution_zip(tmp_path / "managed.zip").managed == 1


def _not_a_solution(tmp_path: Path) -> Path:
    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("photo.txt", "not a solution")
    return path


def _climbing_web_resource(tmp_path: Path) -> Path:
    path = tmp_path / "climbing.zip"
    source = SOLUTIONS / "SecondaryRecordSource_SampleSolution_1_23091_1_managed.zip"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as archive:
        for name in original.namelist():
            data = original.read(name)
            if name == "customizations.xml":
                data = data.replace(b"<Name>new_SecondaryRecordSource</Name>", b"<Name>new_/../../../../x.js</Name>")
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("make_zip", "message"),
    [
        (_not_a_solution, "must contain solution.xml, customizations.xml and [Content_Types].xml"),
        (lambda tmp_path: ROOT / "README.md", "not a zip archive"),
        (_climbing_web_resource, "would escape the solution folder"),
        (lambda tmp_path: tmp_path / "missing.zip", "no such file"),
    ],
    ids=["zip-not-a-solution", "not-a-zip", "path-escaping-dir", "missing"],
)
def test_unpack_refuses_bad_input_with_one_line_exit_2_and_writes_nothing(
    no_database_env: dict[str, str], tmp_path: Path, make_zip: object, message: str
) -> None:
    source = make_zip(tmp_path)  # type: ignore[operator]
    folder = tmp_path / "never-written"

    refused = _manage(no_database_env, "solution_unpack", source, folder)

    assert refused.returncode == 2
    assert refused.stdout == ""
    assert len(refused.stderr.strip().splitlines()) == 1 and message in refused.stderr, refused.stderr
    assert not folder.exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".never-written")]


def test_unpack_never_writes_into_a_folder_that_has_files(no_database_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")

    refused = _manage(no_database_env, "solution_unpack", SOLUTIONS / "UpdateCreatedBy_1_0_0_1.zip", folder)

    assert refused.returncode == 2 and "is not empty" in refused.stderr
    assert [path.name for path in folder.iterdir()] == ["notes.txt"]


def test_pack_refuses_a_folder_without_solution_xml_and_writes_nothing(
    no_database_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "plain"
    (folder / "Other").mkdir(parents=True)
    (folder / "Other" / "Customizations.xml").write_text("<ImportExportXml />")
    target = tmp_path / "out.zip"

    refused = _manage(no_database_env, "solution_pack", folder, target)

    assert refused.returncode == 2 and refused.stdout == ""
    assert (
        refused.stderr.strip() == "CommandError: The folder has no Other/Solution.xml; it is not an unpacked solution."
    )
    assert not target.exists() and sorted(path.name for path in tmp_path.iterdir()) == ["plain"]


def test_pack_refuses_a_file_reference_escaping_the_folder(no_database_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "src"
    assert (
        _manage(
            no_database_env, "solution_unpack", PAIRS / "IncidentReporting" / "incident-reporting.zip", folder
        ).returncode
        == 0
    )
    data_xml = folder / "Workflows" / "IncidentAssignment-6E5A9197-E359-EE11-BE6F-000D3A45ED19.json.data.xml"
    data_xml.write_bytes(data_xml.read_bytes().replace(b"<JsonFileName>/Workflows/", b"<JsonFileName>/../../"))
    target = tmp_path / "out.zip"

    refused = _manage(no_database_env, "solution_pack", folder, target)

    assert refused.returncode == 2 and "would escape the solution folder" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not target.exists()


def test_pack_replaces_an_existing_zip_only_when_it_succeeds(no_database_env: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "solution.zip"
    target.write_bytes(b"previous")
    folder = tmp_path / "missing-folder"

    refused = _manage(no_database_env, "solution_pack", folder, target)

    assert refused.returncode == 2 and "no such folder" in refused.stderr
    assert target.read_bytes() == b"previous"
