"""Pure pieces of the Dataverse client that need no server: codes, settings documents, import logs, base64.

Everything that talks HTTP is tested against the emulator in test_client_emulator.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from alm_portal.dataverse import errors
from alm_portal.dataverse.client import (
    Base64JsonBody,
    RetryPolicy,
    _Base64FieldWriter,
    base64_json_body,
    parse_retry_after,
)
from alm_portal.dataverse.importlog import ImportLogError, parse_import_log
from alm_portal.dataverse.settings_document import DeploymentSettings, DeploymentSettingsError

# --- error codes and classes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0x8004801d", "0x8004801D"),
        ("80048541", "0x80048541"),
        (-2147188707, "0x8004801D"),
        ("-2147188707", "0x8004801D"),
        (0, None),
        ("", None),
        (None, None),
        ("0x0", None),
    ],
)
def test_error_codes_are_normalised_from_every_form_dataverse_uses(raw: object, expected: str | None) -> None:
    assert errors.normalize_error_code(raw) == expected


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (429, "0x80072322", "Number of requests exceeded the limit", errors.Throttled),
        (
            429,
            "0x80071151",
            "Cannot start the requested operation [Import] because there is another [Import]",
            errors.EnvironmentBusy,
        ),
        (400, "", "CustomizationLockException: … another solution at the same time", errors.EnvironmentBusy),
        (400, "0x8004801D", "Some dependencies are missing.", errors.MissingDependencies),
        (400, "0x80048034", "requires solutions that are not currently installed", errors.MissingDependencies),
        (400, "", "The import solution must have a higher version than the existing solution", errors.VersionNotHigher),
        (400, "0x80048040", "…", errors.ManagedUnmanagedMismatch),
        (400, "0x80048041", "…", errors.ManagedUnmanagedMismatch),
        (400, "0x8004F02E", "Managed solutions cannot be exported.", errors.ManagedUnmanagedMismatch),
        (400, "0x80048060", "The solution file is invalid.", errors.BadSolutionZip),
        (400, "0x8004801C", "The publisher name cannot be changed", errors.PublisherMismatch),
        (404, "0x80040217", "Does Not Exist", errors.NotFound),
        (404, "0x8004F02D", "The solution does not exist in this system.", errors.NotFound),
        (401, "", "InvalidAuthTicket", errors.AuthenticationFailed),
        (403, "0x80072560", "The user is not a member of the organization.", errors.AccessDenied),
        (413, "", "too large", errors.PayloadTooLarge),
        (400, "0x80040375", "The import file is too large to upload.", errors.PayloadTooLarge),
        (500, "0x80040216", "An unexpected error occurred.", errors.ServerError),
        (503, "", "", errors.ServerError),
        (400, "0x80060888", "Resource not found for the segment", errors.PermanentError),
    ],
)
def test_each_dataverse_failure_maps_to_one_error_class(
    status: int, code: str, message: str, expected: type[errors.DataverseError]
) -> None:
    error = errors.error_from_dataverse(http_status=status, code=code, message=message)
    assert type(error) is expected
    assert error.http_status == status
    assert error.transient is issubclass(expected, errors.TransientError)


def test_a_failed_system_job_without_a_known_code_is_async_operation_failed() -> None:
    error = errors.error_from_dataverse(
        http_status=None, code=None, message="it broke", default=errors.AsyncOperationFailed
    )
    assert isinstance(error, errors.AsyncOperationFailed)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)]:
        delays = [policy.backoff(retry) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert RetryPolicy(jitter=False, base_delay=0.5).backoff(3) == 2.0


# --- deployment settings (docs/dataverse.md §12) ----------------------------------------------------------------------

PAC_SETTINGS = """\ufeff{
  "EnvironmentVariables": [
    {"SchemaName": "tst_Deployment_env", "Value": "Test"},
    {"SchemaName": "tst_Blank", "Value": ""}
  ],
  "ConnectionReferences": [
    {"LogicalName": "tst_SharepointSiteURL", "ConnectionId": "ef3d1cbb2c3b4e7987e02486584689d3",
     "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_sharepointonline"},
    {"LogicalName": "tst_Unbound", "ConnectionId": "", "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_x"}
  ]
}"""


def test_deployment_settings_become_component_parameters() -> None:
    settings = DeploymentSettings.from_json(PAC_SETTINGS.encode("utf-8"))
    assert settings.blank_entries() == ["tst_Blank", "tst_Unbound"]
    assert settings.component_parameters() == [
        {
            "@odata.type": "Microsoft.Dynamics.CRM.environmentvariablevalue",
            "schemaname": "tst_Deployment_env",
            "value": "Test",
        },
        {
            "@odata.type": "Microsoft.Dynamics.CRM.connectionreference",
            "connectionreferencelogicalname": "tst_SharepointSiteURL",
            "connectionid": "ef3d1cbb2c3b4e7987e02486584689d3",
            "connectorid": "/providers/Microsoft.PowerApps/apis/shared_sharepointonline",
        },
    ]
    assert DeploymentSettings.from_dict(settings.to_dict()) == settings


@pytest.mark.parametrize(
    "document",
    [
        "[]",
        '{"EnvironmentVariables": {}}',
        '{"EnvironmentVariables": [{"Value": "x"}]}',
        '{"EnvironmentVariables": [{"SchemaName": " ", "Value": "x"}]}',
        '{"EnvironmentVariables": [{"SchemaName": "a", "Value": "1"}, {"SchemaName": "A", "Value": "2"}]}',
        '{"ConnectionReferences": [{"ConnectionId": "x"}]}',
        '{"ConnectionReferences": ["x"]}',
        "{not json",
    ],
)
def test_malformed_deployment_settings_are_refused(document: str) -> None:
    with pytest.raises(DeploymentSettingsError):
        DeploymentSettings.from_json(document)


def test_typed_values_are_sent_as_their_json_text() -> None:
    settings = DeploymentSettings.from_dict({"EnvironmentVariables": [{"SchemaName": "n", "Value": 3}]})
    assert settings.environment_variables[0].value == "3"
    assert not DeploymentSettings.from_dict({})


# --- import log (docs/dataverse.md §8.3) ------------------------------------------------------------------------------

IMPORT_LOG = """<?xml version="1.0" encoding="utf-8"?>
<importexportxml start="638000000000000000" stop="638000000100000000" progress="100" processed="true">
  <solutionManifests>
    <solutionManifest languagecode="1033" id="MissingDependency" LocalizedName="Missing Dependency" processed="true">
      <UniqueName>MissingDependency</UniqueName><Version>1.0.0.0</Version><Managed>1</Managed>
      <Publisher>ultradynamics</Publisher>
      <result result="failure" errorcode="0x80048033"
              errortext="Solution manifest import: FAILURE: Some dependencies are missing."
              datetime="10:00:00.00" datetimeticks="1"/>
      <MissingDependencies>
        <MissingDependency>
          <Required type="1" schemaName="new_other" solution="Other (1.0)"/><Dependent type="2" schemaName="new_x"/>
        </MissingDependency>
      </MissingDependencies>
    </solutionManifest>
  </solutionManifests>
  <entities>
    <entity name="account" id="account" processed="true">
      <result result="warning" errorcode="0x8004F039" errortext="Careful"/>
    </entity>
    <entity name="new_thing" processed="true"><result result="success" errorcode="0" errortext=""/></entity>
  </entities>
  <optionSets>
    <optionSet LocalizedName="Colour" processed="true">
      <result result="failure" errorcode="0x80040237" errortext="Bad option"/>
    </optionSet>
  </optionSets>
</importexportxml>"""


def test_import_log_yields_per_component_results() -> None:
    log = parse_import_log(IMPORT_LOG)
    assert log.solution_unique_name == "MissingDependency"
    assert log.solution_version == "1.0.0.0"
    assert log.managed is True
    assert log.result == "failure"
    assert log.error_code == "0x80048033"
    assert not log.succeeded
    assert [(c.component_type, c.name, c.result, c.error_code) for c in log.components] == [
        ("entity", "account", "warning", "0x8004F039"),
        ("entity", "new_thing", "success", None),
        ("optionSet", "Colour", "failure", "0x80040237"),
    ]
    assert [c.message for c in log.failures] == ["Bad option"]
    assert log.missing_dependencies[0].required_name == "new_other"
    assert log.missing_dependencies[0].dependent_type == "2"
    assert log.attributes["progress"] == "100"


@pytest.mark.parametrize(
    "document",
    [
        "<importexportxml>",  # not well-formed
        '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><importexportxml>&b;</importexportxml>',
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><importexportxml>&e;</importexportxml>',
    ],
)
def test_hostile_or_broken_import_logs_are_refused(document: str) -> None:
    with pytest.raises(ImportLogError):
        parse_import_log(document)


# --- streaming base64 both ways --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 767, 768, 769, 5000])
def test_streamed_import_body_is_the_json_json_dumps_would_build(tmp_path: Path, size: int) -> None:
    package = tmp_path / "p.zip"
    content = os.urandom(size)
    package.write_bytes(content)
    body = base64_json_body({"PublishWorkflows": True, "Name": 'x"y'}, "CustomizationFile", package, read_size=6)
    streamed = b"".join(body)
    assert len(streamed) == len(body)
    assert json.loads(streamed) == {
        "PublishWorkflows": True,
        "Name": 'x"y',
        "CustomizationFile": base64.b64encode(content).decode(),
    }
    assert body.sha256 == hashlib.sha256(content).hexdigest()
    assert body.bytes_read == size


def test_read_size_must_keep_base64_groups_whole(tmp_path: Path) -> None:
    package = tmp_path / "p.zip"
    package.write_bytes(b"abc")
    with pytest.raises(ValueError):
        Base64JsonBody(b"{", package, b"}", read_size=4)


@pytest.mark.parametrize("split", [1, 2, 3, 5, 7, 64, 10_000])
def test_export_base64_is_decoded_across_any_chunk_boundary(split: int) -> None:
    content = os.urandom(3001)
    encoded = base64.b64encode(content).decode().replace("/", "\\/")  # some serialisers escape "/"
    document = (
        '{"@odata.context":"https://x/$metadata#Microsoft.Dynamics.CRM.ExportSolutionResponse",'
        f'"ExportSolutionFile" : "{encoded}","Other":1}}'
    ).encode()
    out = io.BytesIO()
    writer = _Base64FieldWriter("ExportSolutionFile", out)
    for start in range(0, len(document), split):
        writer.feed(document[start : start + split])
    assert writer.finish() == hashlib.sha256(content).hexdigest()
    assert out.getvalue() == content
    assert writer.size == len(content)


@pytest.mark.parametrize(
    "document",
    [
        b'{"Other": 1}',
        b'{"ExportSolutionFile": "QUJD',  # truncated
        b'{"ExportSolutionFile": "QU!D"}',
        b'{"ExportSolutionFile": null}',
    ],
)
def test_broken_export_responses_are_invalid(document: bytes) -> None:
    writer = _Base64FieldWriter("ExportSolutionFile", io.BytesIO())
    with pytest.raises(errors.InvalidResponse):
        writer.feed(document)
        writer.finish()
