"""A stage's settings checked against a real package's manifest (flow-excel 1.0.0.7: 3 connection
references, 10 environment variable definitions without packaged values)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alm_portal.dataverse.package import read_solution_zip
from deployments.settings_documents import (
    settings_document_coverage,
    settings_document_from_manifest,
    settings_document_validate,
)

PACKAGE = (
    Path(__file__).resolve().parents[1]
    / "fixtures/corpus/solutions/flow-excel-groupbyemail-notification-example.v1_0_0_7.zip"
)
EXCEL = "/providers/Microsoft.PowerApps/apis/shared_excelonlinebusiness"


@pytest.fixture(scope="module")
def manifest():
    return read_solution_zip(PACKAGE).to_dict()


def test_unknown_missing_and_other_connector_names_are_reported(manifest):
    document = settings_document_validate(
        {
            "EnvironmentVariables": [
                {"SchemaName": "GSLLC_excel_table_name", "Value": "Orders"},  # case does not matter
                {"SchemaName": "gsllc_Excel_Tabel_Name", "Value": "typo"},
            ],
            "ConnectionReferences": [
                {
                    "LogicalName": "gsllc_sharedexcelonlinebusiness_055aa",
                    "ConnectionId": "c1",
                    "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_sql",
                }
            ],
        }
    )
    coverage = settings_document_coverage(document, manifest)
    assert coverage["unknown"] == {"EnvironmentVariables": ["gsllc_Excel_Tabel_Name"], "ConnectionReferences": []}
    assert len(coverage["missing"]["EnvironmentVariables"]) == 9
    assert [item["name"] for item in coverage["missing"]["ConnectionReferences"]] == [
        "gsllc_sharedoffice365_d6869",
        "gsllc_sharedsharepointonline_7584d",
    ]
    assert coverage["connector_mismatch"] == [
        {
            "name": "gsllc_sharedexcelonlinebusiness_055aa",
            "given": "/providers/Microsoft.PowerApps/apis/shared_sql",
            "expected": EXCEL,
        }
    ]
    assert coverage["complete"] is False


def test_a_listed_name_with_an_empty_value_is_still_missing(manifest):
    template = settings_document_validate(settings_document_from_manifest(manifest, keep={}))
    coverage = settings_document_coverage(template, manifest)
    assert all(item["listed"] for item in coverage["missing"]["EnvironmentVariables"])
    assert len(coverage["missing"]["ConnectionReferences"]) == 3
    assert coverage["unknown"] == {"EnvironmentVariables": [], "ConnectionReferences": []}


def test_filling_from_a_manifest_keeps_what_is_there_and_adds_the_rest_empty(manifest):
    keep = {"EnvironmentVariables": [{"SchemaName": "gsllc_Excel_Table_Name", "Value": "Orders"}]}
    filled = settings_document_from_manifest(manifest, keep=keep)
    variables = filled["EnvironmentVariables"]
    assert variables[0] == {"SchemaName": "gsllc_Excel_Table_Name", "Value": "Orders"}
    assert len(variables) == 10 and all(item["Value"] == "" for item in variables[1:])
    assert {"LogicalName": "gsllc_sharedexcelonlinebusiness_055aa", "ConnectionId": "", "ConnectorId": EXCEL} in filled[
        "ConnectionReferences"
    ]
    complete = {
        "EnvironmentVariables": [dict(item, Value="x") for item in variables],
        "ConnectionReferences": [dict(item, ConnectionId="c") for item in filled["ConnectionReferences"]],
    }
    assert settings_document_coverage(settings_document_validate(complete), manifest)["complete"] is True
