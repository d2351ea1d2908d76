"""A zip packed from an unpacked folder imports into Dataverse (the emulator, over real HTTPS) like the original."""

from __future__ import annotations

from pathlib import Path

import pytest

from alm_portal.dataverse.auth import ClientCredentials
from alm_portal.dataverse.client import DataverseClient
from alm_portal.dataverse.packager import PackageType, pack_folder, unpack_solution, write_folder
from tests.support.emulator import EmulatorOrg

SOLUTIONS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "solutions"


def _client(org: EmulatorOrg) -> DataverseClient:
    credentials = ClientCredentials(org.authority, org.client_id, org.client_secret)
    return DataverseClient(org.url, credentials=credentials, ca_bundle=str(org.server.ca_file))


@pytest.mark.parametrize(
    ("zip_name", "unique_name", "version", "managed"),
    [
        ("IncidentReporting_1_0_0_4.zip", "IncidentReporting", "1.0.0.4", False),
        ("Success_1_0_0_0_managed.zip", "Success", "1.0.0.0", True),
    ],
)
def test_a_solution_packed_from_source_imports(
    emulator_org: EmulatorOrg, tmp_path: Path, zip_name: str, unique_name: str, version: str, managed: bool
) -> None:
    folder, packed_zip = tmp_path / "src", tmp_path / "packed.zip"
    write_folder(unpack_solution(SOLUTIONS / zip_name).files, folder)
    packed = pack_folder(folder)
    packed_zip.write_bytes(packed.data)
    assert packed.package_type is (PackageType.MANAGED if managed else PackageType.UNMANAGED)

    client = _client(emulator_org)
    handle = client.import_solution_async(packed_zip)
    operation = client.wait_for_async_operation(handle.async_operation_id, timeout=60, initial_interval=0.1)

    assert operation.succeeded, operation
    installed = client.get_solution(unique_name)
    assert installed is not None and installed.version == version and installed.is_managed is managed
