"""The solution package reader on real solution files: manifests, diffs, versions and re-versioning.

Expectations come from tests/fixtures/corpus/MANIFEST.md, parsed here, so every corpus file is checked against
what was recorded about it independently of this code. Refusals of crafted, hostile zips are in
test_package_safety.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from alm_portal.dataverse.package import (
    ComponentKind,
    PackageError,
    PackageErrorCode,
    SolutionManifest,
    SolutionVersion,
    VersionPart,
    component_type_name,
    diff_manifests,
    read_solution_folder,
    read_solution_package,
    read_solution_zip,
    reversion_package,
    versions_equivalent,
)

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"
SOLUTIONS = CORPUS / "solutions"
UNPACKED = CORPUS / "unpacked"


def _markdown_table(heading: str) -> list[dict[str, str]]:
    """Rows of the first table after ``heading`` in MANIFEST.md, as dicts keyed by (backtick-free) header."""
    lines = (CORPUS / "MANIFEST.md").read_text(encoding="utf-8").splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(heading))
    table: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break

    def cells(line: str) -> list[str]:
        return [cell.strip().strip("`").strip() for cell in line.strip().strip("|").split("|")]

    header = cells(table[0])
    return [dict(zip(header, cells(line), strict=True)) for line in table[2:]]


ZIP_ROWS = _markdown_table("## 1. Solution zips")
ZIP_DETAILS = {row["File"]: row for row in _markdown_table("### Format details per zip")}
FOLDER_ROWS = _markdown_table("## 2. Unpacked solution sources")


def _zip(name: str) -> SolutionManifest:
    return read_solution_zip(SOLUTIONS / name)


def _type_counts(text: str) -> Counter[int]:
    return Counter({int(code): int(count) for code, count in re.findall(r"(\d+): (\d+)", text)})


# --- the corpus matches MANIFEST.md ---------------------------------------------------------------------------


def test_manifest_md_describes_exactly_the_copied_corpus() -> None:
    assert len(ZIP_ROWS) == 25
    assert {row["File"] for row in ZIP_ROWS} == {path.name for path in SOLUTIONS.glob("*.zip")}
    assert set(ZIP_DETAILS) == {row["File"] for row in ZIP_ROWS}
    assert {row["Folder"].rstrip("/") for row in FOLDER_ROWS} == {path.name for path in UNPACKED.iterdir()}


@pytest.mark.parametrize("row", ZIP_ROWS, ids=[row["File"] for row in ZIP_ROWS])
def test_every_corpus_zip_parses_and_matches_manifest_md(row: dict[str, str]) -> None:
    manifest = _zip(row["File"])
    details = ZIP_DETAILS[row["File"]]

    assert manifest.source_format == "zip"
    assert manifest.unique_name == row["UniqueName"]
    assert manifest.version.text == row["Version"]
    assert manifest.managed == int(row["Managed"].split()[0])
    assert manifest.publisher.unique_name == row["Publisher"]
    assert len(manifest.root_components) == int(row["RootComponents"])
    assert Counter(root.type_code for root in manifest.root_components) == _type_counts(
        details["RootComponent types (type: count)"]
    )
    assert len(manifest.missing_dependencies) == int(details["MissingDependencies"])
    expected_package_version = details["SolutionPackageVersion"]
    assert manifest.solution_package_version == (
        None if expected_package_version == "(absent)" else expected_package_version
    )
    assert manifest.export_version == details["ImportExportXml/@version"]
    assert json.loads(json.dumps(manifest.to_dict()))["unique_name"] == row["UniqueName"]


@pytest.mark.parametrize("row", FOLDER_ROWS, ids=[row["Folder"] for row in FOLDER_ROWS])
def test_every_unpacked_folder_parses_and_matches_manifest_md(row: dict[str, str]) -> None:
    manifest = read_solution_folder(UNPACKED / row["Folder"].rstrip("/"))

    assert manifest.source_format == "folder"
    assert manifest.unique_name == row["UniqueName"]
    assert manifest.version.text == row["Version"]
    assert manifest.managed == int(row["Managed"].split()[0])
    assert manifest.publisher.unique_name == row["Publisher"]
    assert len(manifest.root_components) == int(row["RootComponents"])
    json.dumps(manifest.to_dict())


def test_identity_comes_from_solution_xml_not_the_file_name() -> None:
    manifest = _zip("IncidentReporting_1_0_0_1_managed.zip")

    assert (manifest.version.text, manifest.managed, manifest.package_type) == ("1.0.0.2", 1, "managed")


def test_unpacked_sources_can_be_both_managed_and_unmanaged() -> None:
    manifest = read_solution_folder(UNPACKED / "IncidentReporting_1_0_0_4")

    assert (manifest.managed, manifest.package_type, manifest.is_managed) == (2, "both", False)


def test_read_solution_package_picks_the_reader_from_the_source() -> None:
    assert read_solution_package(UNPACKED / "emptySolution_0_1_0_0").source_format == "folder"
    assert read_solution_package(SOLUTIONS / "Success_1_0_0_0_managed.zip").source_format == "zip"
    assert read_solution_package((SOLUTIONS / "Success_1_0_0_0_managed.zip").read_bytes()).unique_name == "Success"


def test_unpacked_folder_and_its_zip_describe_the_same_components() -> None:
    folder = read_solution_folder(UNPACKED / "IncidentReporting_1_0_0_4")
    packed = _zip("IncidentReporting_1_0_0_4.zip")

    assert {root.identity for root in folder.root_components} == {root.identity for root in packed.root_components}
    for kind in ("tables", "workflows", "canvas_apps", "model_driven_apps", "connection_references"):
        assert {c.key for c in getattr(folder, kind)} == {c.key for c in getattr(packed, kind)}, kind
    assert {c.key for c in folder.environment_variables} == {c.key for c in packed.environment_variables}
    assert {t.key: t.columns for t in folder.tables} == {t.key: t.columns for t in packed.tables}


# --- what the manifest says about a solution ------------------------------------------------------------------


def test_solution_xml_root_attributes_and_publisher() -> None:
    manifest = _zip("UpdateCreatedBy_1_0_0_1.zip")

    assert manifest.generated_by == "CrmLive"
    assert manifest.organization_version == "9.2.24083.198"
    assert manifest.root_attributes["CRMServerServiceabilityVersion"] == "9.2.24083.00198"
    assert manifest.root_attributes["OrganizationType"] == "Developer"
    incident = _zip("IncidentReporting_1_0_0_2.zip")
    assert incident.localized_names == {1033: "Incident Reporting"}
    assert incident.publisher.localized_names == {1033: "Shaheer Ahmad"}
    assert (incident.publisher.customization_prefix, incident.publisher.option_value_prefix) == ("sa", 12638)


def test_root_components_carry_type_names_ids_and_behavior() -> None:
    roots = {
        (root.type_code, root.schema_name or root.id): root
        for root in _zip("PodcastCopilotSolution_1_0_0_2.zip").root_components
    }

    connector = roots[(372, "new_podcastcopilot-5Fconnector")]
    assert (connector.type_name, connector.id, connector.behavior) == (
        "Connector",
        "7332c389-a6df-ee11-904d-000d3a4f563f",
        0,
    )
    assert roots[(29, "5e43221f-c5e0-ee11-904d-000d3a4f563f")].type_name == "Workflow"
    # CRM 2011-era exports have no behavior attribute.
    assert {root.behavior for root in _zip("QuoteLineEditor_0_1_0_managed.zip").root_components} == {None}


def test_component_type_names() -> None:
    assert [component_type_name(code) for code in (1, 2, 9, 20, 29, 60, 61, 62, 80, 91, 92, 300, 371, 372, 380)] == [
        "Entity",
        "Attribute",
        "Option Set",
        "Role",
        "Workflow",
        "System Form",
        "Web Resource",
        "Site Map",
        "AppModule",
        "Plugin Assembly",
        "SDK Message Processing Step",
        "Canvas App",
        "Connector",
        "Connector",
        "Environment Variable Definition",
    ]
    assert "10150" in component_type_name(10150)
    assert component_type_name(999) == "Unknown component type 999"


def test_missing_dependencies_name_both_sides() -> None:
    dependency = _zip("StartMenu_1_4_managed.zip").missing_dependencies[0]

    assert (dependency.required.type_code, dependency.required.schema_name, dependency.required.solution) == (
        61,
        "sparkle_/js/SparkleXrm.js",
        "SparkleXrm (0.1.3)",
    )
    assert (dependency.dependent.type_name, dependency.dependent.schema_name) == (
        "Ribbon Customization",
        ":RibbonDiffXml",
    )


def test_tables_list_their_columns_by_logical_name() -> None:
    tables = {table.key: table for table in _zip("IncidentReporting_1_0_0_2.zip").tables}

    assert set(tables) == {"csa_csincident", "systemuser", "team"}
    assert tables["csa_csincident"].schema_name == "csa_csIncident"
    assert tables["csa_csincident"].name == "Incident"
    assert tables["csa_csincident"].columns is not None
    assert {"activityid", "activityadditionalparams"} <= set(tables["csa_csincident"].columns)
    # A table included without its metadata (ribbon only) makes no claim about columns.
    quote = {table.key: table for table in _zip("QuoteLineEditor_0_1_0_managed.zip").tables}
    assert quote["quote"].columns is None


def test_flows_and_processes() -> None:
    workflows = {workflow.name: workflow for workflow in _zip("TravelRequestApprovalApp_1_0_0_2.zip").workflows}

    assert len(workflows) == 8
    notification = workflows["Travel Request Notification"]
    assert (notification.workflow_id, notification.category, notification.category_name) == (
        "fd7fe842-6b2e-ed11-9db1-0022482d3383",
        5,
        "Modern Flow",
    )
    assert workflows["Set Value in the Name field"].category_name == "Business Rule"


def test_apps_roles_and_connection_references() -> None:
    travel = _zip("TravelRequestApprovalApp_1_0_0_6.solution.zip")

    assert [app.app_name for app in travel.canvas_apps] == ["sb_travelrequestapp_71ff6"]
    assert len(travel.model_driven_apps) == 1
    assert len(travel.security_roles) == 5
    assert all(role.role_id for role in travel.security_roles)
    assert len(travel.connection_references) == 4
    contoso = _zip("Contoso_sample_1_0_0_1_managed.zip").connection_references
    assert [(ref.logical_name, ref.connector_id) for ref in contoso] == [
        ("new_D365connection", "/providers/Microsoft.PowerApps/apis/shared_dynamicscrmonline")
    ]


def test_environment_variables_with_packaged_values() -> None:
    contoso = _zip("Contoso_sample_1_0_0_1_managed.zip").environment_variables

    assert len(contoso) == 1
    variable = contoso[0]
    assert (variable.schema_name, variable.type_name, variable.current_value, variable.name) == (
        "new_ContosoURL",
        "String",
        "https://contoso.com",
        "Contoso URL",
    )
    flow = _zip("flow-excel-groupbyemail-notification-example.v1_0_0_7.zip").environment_variables
    assert len(flow) == 10
    assert {variable.current_value for variable in flow} == {None}  # this export carries no values files
    incident = {v.schema_name: v for v in _zip("IncidentReporting_1_0_0_4.zip").environment_variables}
    assert {v.type_name for v in incident.values()} == {"Data Source"}


def test_plugins_and_web_resources() -> None:
    sales = _zip("Power365CRMSalesSolution_1_0_0_1_managed.zip")

    assert [assembly.name for assembly in sales.plugin_assemblies] == ["P365I_CRM.Sales"]
    assert len(sales.plugin_assemblies[0].plugin_types) >= 4
    assert len(sales.plugin_steps) == 7
    step = next(step for step in sales.plugin_steps if step.step_id == "36b95e9e-f2c1-ee11-9079-00224840d636")
    assert (step.primary_entity, step.stage, step.mode) == ("p365i_opportunity", 40, 0)
    assert len(sales.web_resources) == 8
    assert "p365i_opportunity.js" in {resource.unique_name for resource in sales.web_resources}
    unpacked = read_solution_folder(UNPACKED / "XrmCIFrameworkSample_1_0_0_0")
    assert {resource.unique_name for resource in unpacked.web_resources} == {
        "wh_JavaScript/SampleAccount.js",
        "wh_WebPages/SampleAccount.html",
    }
    assert len(unpacked.plugin_assemblies) == 2


def test_custom_connectors() -> None:
    connectors = _zip("PodcastCopilotSolution_1_0_0_2.zip").custom_connectors

    assert [(c.connector_name, c.name, c.connector_id) for c in connectors] == [
        ("new_podcastcopilot-5Fconnector", "PodcastCopilot_Connector", "7332c389-a6df-ee11-904d-000d3a4f563f")
    ]


def test_every_component_has_a_content_hash_and_hashes_are_stable() -> None:
    first = _zip("Power365CRMSalesSolution_1_0_0_1_managed.zip")
    second = read_solution_zip((SOLUTIONS / "Power365CRMSalesSolution_1_0_0_1_managed.zip").read_bytes())

    assert first.components()
    assert all(re.fullmatch(r"[0-9a-f]{64}", component.content_hash) for component in first.components())
    assert [c.content_hash for c in first.components()] == [c.content_hash for c in second.components()]


def test_content_hash_covers_files_the_component_points_at() -> None:
    # Same flow definition XML in both files, but the flow JSON itself differs between the two exports.
    old = {w.key: w for w in _zip("flow-excel-groupbyemail-notification-example.v1_0_0_2.zip").workflows}
    new = {w.key: w for w in _zip("flow-excel-groupbyemail-notification-example.v1_0_0_7.zip").workflows}
    old_files = {f.path: f.sha256 for f in _zip("flow-excel-groupbyemail-notification-example.v1_0_0_2.zip").files}
    new_files = {f.path: f.sha256 for f in _zip("flow-excel-groupbyemail-notification-example.v1_0_0_7.zip").files}
    flow_json = next(path for path in old_files if path.startswith("Workflows/"))

    assert old.keys() == new.keys()
    assert old_files[flow_json] != new_files[flow_json]
    assert all(old[key].content_hash != new[key].content_hash for key in old)


# --- diffs ----------------------------------------------------------------------------------------------------


def test_incident_reporting_upgrade_drops_the_employee_table_and_calls_it_data_loss() -> None:
    diff = diff_manifests(_zip("IncidentReporting_1_0_0_2.zip"), _zip("IncidentReporting_1_0_0_4.zip"))

    assert [(ref.kind, ref.key, ref.name) for ref in diff.removed] == [(ComponentKind.TABLE, "systemuser", "Employee")]
    assert [(loss.table, loss.column) for loss in diff.data_loss] == [("systemuser", None)]
    assert "deletes" in diff.data_loss[0].description
    assert [(root.type_code, root.schema_name) for root in diff.root_components_removed] == [(1, "systemuser")]
    assert diff.added == ()
    assert (diff.old_version.text, diff.new_version.text) == ("1.0.0.2", "1.0.0.4")
    json.dumps(diff.to_dict())


def test_podcast_copilot_1_0_0_2_adds_a_connector_and_its_connection_references() -> None:
    diff = diff_manifests(_zip("PodcastCopilotSolution_1_0_0_1.zip"), _zip("PodcastCopilotSolution_1_0_0_2.zip"))

    added = Counter(ref.kind for ref in diff.added)
    assert added == {ComponentKind.CUSTOM_CONNECTOR: 1, ComponentKind.CONNECTION_REFERENCE: 2}
    assert "new_podcastcopilot-5fconnector" in {ref.key for ref in diff.added}
    assert [(root.type_code, root.schema_name) for root in diff.root_components_added] == [
        (372, "new_podcastcopilot-5Fconnector")
    ]
    assert diff.removed == () and diff.data_loss == ()
    # The flow and the app were re-exported with the connector wired in.
    assert {change.kind for change in diff.changed} == {ComponentKind.WORKFLOW, ComponentKind.CANVAS_APP}


def test_podcast_copilot_1_0_0_5_removes_them_again() -> None:
    diff = diff_manifests(_zip("PodcastCopilotSolution_1_0_0_2.zip"), _zip("PodcastCopilotSolution_1_0_0_5.zip"))

    assert Counter(ref.kind for ref in diff.removed) == {
        ComponentKind.CUSTOM_CONNECTOR: 1,
        ComponentKind.CONNECTION_REFERENCE: 2,
    }
    assert diff.data_loss == ()


def test_travel_request_1_0_0_6_adds_a_table_a_choice_and_connection_references() -> None:
    diff = diff_manifests(
        _zip("TravelRequestApprovalApp_1_0_0_2.zip"), _zip("TravelRequestApprovalApp_1_0_0_6.solution.zip")
    )

    added = Counter(ref.kind for ref in diff.added)
    assert added[ComponentKind.TABLE] == 1
    assert added[ComponentKind.OPTION_SET] == 1
    assert added[ComponentKind.CONNECTION_REFERENCE] == 3


@pytest.mark.parametrize("row", ZIP_ROWS, ids=[row["File"] for row in ZIP_ROWS])
def test_a_manifest_diffed_with_itself_is_empty(row: dict[str, str]) -> None:
    manifest = _zip(row["File"])

    assert diff_manifests(manifest, manifest).is_empty


def test_component_order_does_not_matter() -> None:
    manifest = _zip("TravelRequestApprovalApp_1_0_0_6.solution.zip")
    shuffled = dataclasses.replace(
        manifest,
        **{
            name: tuple(reversed(getattr(manifest, name)))
            for name in (
                "root_components",
                "tables",
                "workflows",
                "security_roles",
                "connection_references",
                "option_sets",
            )
        },
    )

    assert diff_manifests(manifest, shuffled).is_empty
    assert diff_manifests(shuffled, manifest).is_empty


def _rewrite_zip(source: Path, member: str, edit: Callable[[bytes], bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as copy:
        for info in original.infolist():
            data = original.read(info)
            copy.writestr(info, edit(data) if info.filename == member else data)
    return out.getvalue()


def _drop_column(customizations: bytes, table: str, column: str) -> bytes:
    entity_at = customizations.index(f'<entity Name="{table}">'.encode())
    name_at = customizations.index(f"<LogicalName>{column}</LogicalName>".encode(), entity_at)
    start = customizations.rindex(b"<attribute ", entity_at, name_at)
    end = customizations.index(b"</attribute>", name_at) + len(b"</attribute>")
    return customizations[:start] + customizations[end:]


def test_removing_a_column_from_a_kept_table_is_data_loss() -> None:
    source = SOLUTIONS / "Success_1_0_0_0_managed.zip"
    old = read_solution_zip(source)

    new = read_solution_zip(
        _rewrite_zip(source, "customizations.xml", lambda data: _drop_column(data, "ud_testentity1", "ud_name"))
    )
    diff = diff_manifests(old, new)

    assert [(loss.table, loss.column) for loss in diff.data_loss] == [("ud_testentity1", "ud_name")]
    assert "Column 'ud_name'" in diff.data_loss[0].description
    assert [(change.kind, change.key) for change in diff.changed] == [(ComponentKind.TABLE, "ud_testentity1")]
    assert diff.removed == () and diff.added == ()


# --- versions -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts", "padded"),
    [
        ("1.0", (1, 0), (1, 0, 0, 0)),
        ("0.1.0", (0, 1, 0), (0, 1, 0, 0)),
        ("1.21111.1", (1, 21111, 1), (1, 21111, 1, 0)),
        ("1.0.0.2", (1, 0, 0, 2), (1, 0, 0, 2)),
        ("8.1.0000.0240", (8, 1, 0, 240), (8, 1, 0, 240)),
        (" 2.0.0.0 ", (2, 0, 0, 0), (2, 0, 0, 0)),
    ],
)
def test_versions_parse_2_3_and_4_parts_and_zero_padding(
    text: str, parts: tuple[int, ...], padded: tuple[int, ...]
) -> None:
    version = SolutionVersion.parse(text)

    assert (version.parts, version.padded, version.text) == (parts, padded, text.strip())
    assert str(version) == text.strip()


@pytest.mark.parametrize("text", ["", "1", "1.2.3.4.5", "1.-2", "v1.0", "1..0", "1.0.x", "1.99999999999"])
def test_malformed_versions_are_refused(text: str) -> None:
    with pytest.raises(PackageError) as refused:
        SolutionVersion.parse(text)

    assert refused.value.code == PackageErrorCode.INVALID_VERSION


def test_version_ordering_pads_missing_parts_with_zero() -> None:
    texts = ["1.4", "1.1", "1.0.0.10", "1.0.0.9", "0.1.0", "1.21111.1", "1.4.0.1", "1.23091.1"]

    ordered = [version.text for version in sorted(SolutionVersion.parse(text) for text in texts)]

    assert ordered == ["0.1.0", "1.0.0.9", "1.0.0.10", "1.1", "1.4", "1.4.0.1", "1.21111.1", "1.23091.1"]
    assert SolutionVersion.parse("1.0.0.10") > SolutionVersion.parse("1.0.0.9")  # numeric, not text order
    assert SolutionVersion.parse("8.1.0000.0240") == SolutionVersion.parse("8.1.0.240")


def test_equivalence_is_decided_in_one_place() -> None:
    short, long = SolutionVersion.parse("1.4"), SolutionVersion.parse("1.4.0.0")

    # UNCONFIRMED whether Dataverse agrees; see versions_equivalent.
    assert versions_equivalent(short, long)
    assert (short == long) is versions_equivalent(short, long)
    assert hash(short) == hash(long)
    assert not short < long and not short > long
    assert not versions_equivalent(short, SolutionVersion.parse("1.4.0.1"))


@pytest.mark.parametrize(
    ("text", "part", "expected"),
    [
        ("1.0.0.2", "revision", "1.0.0.3"),
        ("1.0.0.2", "build", "1.0.1.0"),
        ("1.2.3.4", "minor", "1.3.0.0"),
        ("1.2.3.4", "major", "2.0.0.0"),
        ("1.4", "revision", "1.4.0.1"),
        ("0.1.0", VersionPart.MINOR, "0.2.0.0"),
    ],
)
def test_bump(text: str, part: str, expected: str) -> None:
    bumped = SolutionVersion.parse(text).bump(part)

    assert bumped.text == expected
    assert bumped > SolutionVersion.parse(text)


def test_bump_refuses_an_unknown_part() -> None:
    with pytest.raises(ValueError):
        SolutionVersion.parse("1.0").bump("patch")


# --- re-versioning --------------------------------------------------------------------------------------------


def _local_records(data: bytes) -> dict[str, bytes]:
    """Raw bytes of each entry's local header + compressed data, by name."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = sorted(archive.infolist(), key=lambda info: info.header_offset)
        start_dir = archive.start_dir  # type: ignore[attr-defined]
    bounds = [info.header_offset for info in infos] + [start_dir]
    return {info.filename: data[start:stop] for info, start, stop in zip(infos, bounds, bounds[1:], strict=False)}


@pytest.mark.parametrize(
    ("name", "new_version"),
    [
        ("IncidentReporting_1_0_0_2.zip", "1.0.0.3"),
        ("StartMenu_1_4_managed.zip", "1.5"),
        ("flow-excel-groupbyemail-notification-example.v1_0_0_7.zip", "1.0.0.8"),
        ("CodeInterpreterControlSolution.zip", "2.0.0.0"),
    ],
)
def test_reversion_changes_only_the_version_in_solution_xml(name: str, new_version: str, tmp_path: Path) -> None:
    source = SOLUTIONS / name
    original_bytes = source.read_bytes()
    dest = tmp_path / "out.zip"

    result = reversion_package(source, new_version, dest)

    new_bytes = dest.read_bytes()
    assert result.version.text == new_version
    assert read_solution_zip(dest).version.text == new_version
    with zipfile.ZipFile(source) as before, zipfile.ZipFile(dest) as after:
        assert after.testzip() is None
        assert [i.filename for i in after.infolist()] == [i.filename for i in before.infolist()]
        assert after.comment == before.comment
        old_xml = before.read("solution.xml")
        new_xml = after.read("solution.xml")
        old_version = read_solution_zip(source).version.text
        assert new_xml == old_xml.replace(
            f"<Version>{old_version}</Version>".encode(), f"<Version>{new_version}</Version>".encode(), 1
        )
        for info in before.infolist():
            if info.filename != "solution.xml":
                assert after.read(info.filename) == before.read(info.filename), info.filename
    old_records, new_records = _local_records(original_bytes), _local_records(new_bytes)
    assert list(old_records) == list(new_records)
    for entry, record in old_records.items():
        if entry != "solution.xml":
            assert new_records[entry] == record, entry  # compressed bytes and headers untouched
    assert source.read_bytes() == original_bytes


def test_reversion_to_a_stream_and_from_bytes() -> None:
    out = io.BytesIO()

    result = reversion_package(
        (SOLUTIONS / "Success_1_0_0_0_managed.zip").read_bytes(), SolutionVersion.parse("1.0.0.1"), out
    )

    assert result.version.text == "1.0.0.1"
    assert read_solution_zip(out.getvalue()).version == SolutionVersion.parse("1.0.0.1")
    diff = diff_manifests(read_solution_zip(SOLUTIONS / "Success_1_0_0_0_managed.zip"), result)
    assert diff.is_empty


def test_reversion_keeps_a_bom_and_whitespace(tmp_path: Path) -> None:
    source = tmp_path / "bom.zip"
    original = SOLUTIONS / "Success_1_0_0_0_managed.zip"
    with zipfile.ZipFile(original) as archive:
        xml = archive.read("solution.xml")
    spaced = b"\xef\xbb\xbf" + xml.replace(b"<Version>1.0.0.0</Version>", b"<Version>\n  1.0.0.0\n</Version>")
    source.write_bytes(_rewrite_zip(original, "solution.xml", lambda _data: spaced))

    reversion_package(source, "1.0.0.7", tmp_path / "out.zip")

    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        assert archive.read("solution.xml") == spaced.replace(b"1.0.0.0\n</Version>", b"1.0.0.7\n</Version>")


def test_reversion_never_edits_a_look_alike_in_a_comment(tmp_path: Path) -> None:
    source = tmp_path / "comment.zip"
    original = SOLUTIONS / "Success_1_0_0_0_managed.zip"
    with zipfile.ZipFile(original) as archive:
        xml = archive.read("solution.xml")
    commented = xml.replace(b"<SolutionManifest>", b"<!-- <Version>1.0.0.0</Version> --><SolutionManifest>", 1)
    source.write_bytes(_rewrite_zip(original, "solution.xml", lambda _data: commented))

    reversion_package(source, "3.0.0.0", tmp_path / "out.zip")

    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        written = archive.read("solution.xml")
    assert written == commented.replace(b"    <Version>1.0.0.0</Version>", b"    <Version>3.0.0.0</Version>")
    assert b"<!-- <Version>1.0.0.0</Version> -->" in written


def test_reversion_refuses_a_bad_version_and_writes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "out.zip"

    with pytest.raises(PackageError) as refused:
        reversion_package(SOLUTIONS / "Success_1_0_0_0_managed.zip", "1.0.0.0.1", dest)

    assert refused.value.code == PackageErrorCode.INVALID_VERSION
    assert not dest.exists()


def test_reversion_refuses_an_unsafe_zip(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.zip"
    shutil.copy(SOLUTIONS / "Success_1_0_0_0_managed.zip", hostile)
    with zipfile.ZipFile(hostile, "a") as archive:
        archive.writestr("../evil.xml", b"<x/>")

    with pytest.raises(PackageError) as refused:
        reversion_package(hostile, "1.0.0.1", tmp_path / "out.zip")

    assert refused.value.code == PackageErrorCode.UNSAFE_NAME
    assert not (tmp_path / "out.zip").exists()


def test_package_error_has_the_api_error_shape() -> None:
    error = PackageError(PackageErrorCode.TOO_LARGE, "Too big.", details={"limit": 1})

    assert error.to_dict() == {"code": "too_large", "message": "Too big.", "details": {"limit": 1}}
    assert str(error) == "too_large: Too big."
