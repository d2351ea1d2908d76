"""Deployment settings: the ``pac solution create-settings`` JSON document and its ComponentParameters.

Shape (docs/dataverse.md §12)::

    {"EnvironmentVariables": [{"SchemaName": "tst_Deployment_env", "Value": "Test"}],
     "ConnectionReferences": [{"LogicalName": "tst_SharepointSiteURL",
                               "ConnectionId": "ef3d1cbb2c3b4e7987e02486584689d3",
                               "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_sharepointonline"}]}

Mapping to the import actions' ``ComponentParameters`` (docs/dataverse.md §5.2, §12; inferred, see
``alm_portal.dataverse.unconfirmed``): each environment variable becomes an ``environmentvariablevalue``
entity ``{schemaname, value}``, each connection reference a ``connectionreference`` entity
``{connectionreferencelogicalname, connectionid, connectorid}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alm_portal.dataverse import unconfirmed

__all__ = [
    "ConnectionReferenceSetting",
    "DeploymentSettings",
    "DeploymentSettingsError",
    "EnvironmentVariableSetting",
]


class DeploymentSettingsError(ValueError):
    """The document is not a deployment-settings JSON in the ``pac solution create-settings`` shape."""


@dataclass(frozen=True)
class EnvironmentVariableSetting:
    """One ``EnvironmentVariables`` entry: the value an environment variable gets in the target."""

    schema_name: str
    value: str

    @property
    def is_blank(self) -> bool:
        return self.value == ""


@dataclass(frozen=True)
class ConnectionReferenceSetting:
    """One ``ConnectionReferences`` entry: the connection a connection reference is bound to in the target."""

    logical_name: str
    connection_id: str
    connector_id: str

    @property
    def is_blank(self) -> bool:
        return self.connection_id == ""


def _entries(document: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    raw = document.get(key, [])
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise DeploymentSettingsError(f"{key} must be a list")
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise DeploymentSettingsError(f"{key}[{index}] must be an object")
    return raw


def _text(item: Mapping[str, Any], key: str, where: str, *, required: bool) -> str:
    value = item.get(key)
    if value is None:
        if required:
            raise DeploymentSettingsError(f"{where}.{key} is required")
        return ""
    if isinstance(value, str):
        return value
    if required:
        raise DeploymentSettingsError(f"{where}.{key} must be a string")
    # A number, boolean or JSON value typed without quotes: send its JSON text, which is what the
    # environment variable's string value holds for those types (docs/dataverse.md §12, definition types).
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class DeploymentSettings:
    """A parsed deployment-settings document (docs/dataverse.md §12)."""

    environment_variables: tuple[EnvironmentVariableSetting, ...] = field(default=())
    connection_references: tuple[ConnectionReferenceSetting, ...] = field(default=())

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> DeploymentSettings:
        """Validate and convert the decoded JSON object; unknown top-level keys are ignored."""
        if not isinstance(document, Mapping):
            raise DeploymentSettingsError("the deployment settings must be a JSON object")
        variables: list[EnvironmentVariableSetting] = []
        seen: set[str] = set()
        for index, item in enumerate(_entries(document, "EnvironmentVariables")):
            where = f"EnvironmentVariables[{index}]"
            schema_name = _text(item, "SchemaName", where, required=True).strip()
            if not schema_name:
                raise DeploymentSettingsError(f"{where}.SchemaName must not be empty")
            if schema_name.lower() in seen:
                raise DeploymentSettingsError(f"{where}.SchemaName {schema_name!r} appears twice")
            seen.add(schema_name.lower())
            variables.append(EnvironmentVariableSetting(schema_name, _text(item, "Value", where, required=False)))
        references: list[ConnectionReferenceSetting] = []
        seen = set()
        for index, item in enumerate(_entries(document, "ConnectionReferences")):
            where = f"ConnectionReferences[{index}]"
            logical_name = _text(item, "LogicalName", where, required=True).strip()
            if not logical_name:
                raise DeploymentSettingsError(f"{where}.LogicalName must not be empty")
            if logical_name.lower() in seen:
                raise DeploymentSettingsError(f"{where}.LogicalName {logical_name!r} appears twice")
            seen.add(logical_name.lower())
            references.append(
                ConnectionReferenceSetting(
                    logical_name,
                    _text(item, "ConnectionId", where, required=False).strip(),
                    _text(item, "ConnectorId", where, required=False).strip(),
                )
            )
        return cls(tuple(variables), tuple(references))

    @classmethod
    def from_json(cls, text: str | bytes) -> DeploymentSettings:
        """Parse the JSON text; a UTF-8 byte-order mark (Windows tools write one) is tolerated."""
        if isinstance(text, bytes):
            text = text.decode("utf-8-sig")
        try:
            document = json.loads(text.lstrip("\ufeff"))
        except json.JSONDecodeError as exc:
            raise DeploymentSettingsError(f"not valid JSON: {exc}") from exc
        return cls.from_dict(document)

    @classmethod
    def from_file(cls, path: str | Path) -> DeploymentSettings:
        return cls.from_json(Path(path).read_bytes())

    def to_dict(self) -> dict[str, list[dict[str, str]]]:
        """The document in the ``pac solution create-settings`` shape (round-trips through from_dict)."""
        return {
            "EnvironmentVariables": [
                {"SchemaName": v.schema_name, "Value": v.value} for v in self.environment_variables
            ],
            "ConnectionReferences": [
                {"LogicalName": r.logical_name, "ConnectionId": r.connection_id, "ConnectorId": r.connector_id}
                for r in self.connection_references
            ],
        }

    def blank_entries(self) -> list[str]:
        """Names of entries without a value (pac writes them blank); a caller may refuse to deploy these."""
        blank = [v.schema_name for v in self.environment_variables if v.is_blank]
        blank += [r.logical_name for r in self.connection_references if r.is_blank]
        return blank

    def component_parameters(self) -> list[dict[str, str]]:
        """The ``ComponentParameters`` collection for ImportSolutionAsync / StageAndUpgradeAsync (docs/dataverse.md
        §5.2).

        Blank entries are omitted (``unconfirmed.OMIT_BLANK_DEPLOYMENT_SETTINGS``).
        """
        omit_blank = unconfirmed.OMIT_BLANK_DEPLOYMENT_SETTINGS
        parameters: list[dict[str, str]] = []
        for variable in self.environment_variables:
            if omit_blank and variable.is_blank:
                continue
            parameters.append(
                {
                    "@odata.type": unconfirmed.ENVIRONMENT_VARIABLE_VALUE_ODATA_TYPE,
                    "schemaname": variable.schema_name,
                    "value": variable.value,
                }
            )
        for reference in self.connection_references:
            if omit_blank and reference.is_blank:
                continue
            entity = {
                "@odata.type": unconfirmed.CONNECTION_REFERENCE_ODATA_TYPE,
                "connectionreferencelogicalname": reference.logical_name,
                "connectionid": reference.connection_id,
            }
            if reference.connector_id:
                entity["connectorid"] = reference.connector_id
            parameters.append(entity)
        return parameters

    def __bool__(self) -> bool:
        return bool(self.environment_variables or self.connection_references)
