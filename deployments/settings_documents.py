"""Deployment settings documents in the `pac solution create-settings` JSON shape.

    {
      "EnvironmentVariables": [{"SchemaName": "contoso_ApiUrl", "Value": "https://…"}],
      "ConnectionReferences": [
        {"LogicalName": "contoso_sharedsql", "ConnectionId": "…",
         "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_sql"}
      ]
    }

Pure functions: parse and validate a document (field errors keyed by JSON path), compute the ETag of
a stored version, and write the file back out exactly in that shape. The services that store
versions are in deployments/services.py.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from alm_portal.errors import ValidationFailed

ENVIRONMENT_VARIABLES = "EnvironmentVariables"
CONNECTION_REFERENCES = "ConnectionReferences"
_SECTIONS: dict[str, tuple[tuple[str, bool], ...]] = {
    # (field, must be non-empty); pac writes "" for values it leaves for people to fill in.
    ENVIRONMENT_VARIABLES: (("SchemaName", True), ("Value", False)),
    CONNECTION_REFERENCES: (("LogicalName", True), ("ConnectionId", False), ("ConnectorId", True)),
}
_KEY_FIELD = {ENVIRONMENT_VARIABLES: "SchemaName", CONNECTION_REFERENCES: "LogicalName"}
MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_VALUE_LENGTH = 100_000


def empty_document() -> dict[str, list[dict[str, str]]]:
    return {ENVIRONMENT_VARIABLES: [], CONNECTION_REFERENCES: []}


def settings_document_parse(content: bytes | str) -> dict[str, Any]:
    """The JSON of a settings file (a UTF-8 BOM, as some editors write, is allowed), validated."""
    if isinstance(content, bytes):
        if len(content) > MAX_DOCUMENT_BYTES:
            raise ValidationFailed("The settings file is too large.", details={"file": ["At most 1 MiB."]})
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationFailed("The settings file is not UTF-8.", details={"file": ["Not UTF-8 text."]}) from None
    try:
        document = json.loads(content)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            "The settings file is not valid JSON.", details={"file": [f"Line {exc.lineno}: {exc.msg}."]}
        ) from None
    except RecursionError:  # 1 MiB of "[" is valid-looking JSON that exhausts the parser's stack
        raise ValidationFailed(
            "The settings file nests too deeply.", details={"file": ["Nested too deeply to be a settings file."]}
        ) from None
    return settings_document_validate(document)


def settings_document_validate(document: Any) -> dict[str, Any]:
    """Check the pac shape and return the normalised document (both sections present, in pac's order).

    Refuses unknown keys (a misspelt `ConnectionReference` would otherwise be ignored silently),
    non-string values, missing names and duplicate names, with errors keyed by JSON path.
    """
    errors: dict[str, list[str]] = {}
    if not isinstance(document, dict):
        raise ValidationFailed(
            "The settings document must be a JSON object.", details={"document": ["Expected a JSON object."]}
        )
    unknown = sorted(set(document) - set(_SECTIONS))
    for key in unknown:
        errors[key] = [f"Unknown key; a settings file has only {ENVIRONMENT_VARIABLES} and {CONNECTION_REFERENCES}."]
    normalised: dict[str, Any] = {}
    for section, fields in _SECTIONS.items():
        items = document.get(section, [])
        if items is None:
            items = []
        if not isinstance(items, list):
            errors[section] = ["Expected a list."]
            continue
        seen: dict[str, int] = {}
        clean_items = []
        for index, item in enumerate(items):
            path = f"{section}[{index}]"
            if not isinstance(item, dict):
                errors[path] = ["Expected an object."]
                continue
            for key in sorted(set(item) - {name for name, _ in fields}):
                errors[f"{path}.{key}"] = ["Unknown key."]
            clean: dict[str, str] = {}
            for name, required in fields:
                value = item.get(name, None if required else "")
                if value is None and not required:
                    value = ""
                if not isinstance(value, str):
                    errors[f"{path}.{name}"] = ["Must be a string." if value is not None else "This field is required."]
                    continue
                if required and not value.strip():
                    errors[f"{path}.{name}"] = ["This field is required."]
                    continue
                if len(value) > MAX_VALUE_LENGTH:
                    errors[f"{path}.{name}"] = [f"At most {MAX_VALUE_LENGTH} characters."]
                    continue
                clean[name] = value.strip() if required else value
            key_value = clean.get(_KEY_FIELD[section])
            if key_value:
                folded = key_value.casefold()
                if folded in seen:
                    errors[f"{path}.{_KEY_FIELD[section]}"] = [f"Duplicate of {section}[{seen[folded]}]."]
                else:
                    seen[folded] = index
            clean_items.append(clean)
        normalised[section] = clean_items
    if errors:
        raise ValidationFailed("The deployment settings are not valid.", details=errors)
    return normalised


def settings_document_etag(*, stage_id: int, version: int, document: dict[str, Any]) -> str:
    """A strong ETag: SHA-256 of the stage, the version number and the canonical document."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{stage_id}:{version}:{canonical}".encode()).hexdigest()


def etag_matches(*, if_match: str | None, current: str) -> bool:
    """Compare an If-Match value with the current ETag ("" when the stage has no settings yet).

    Accepts the quoted HTTP form and a weak prefix; `*` is not accepted, because it would let a
    client overwrite changes it has never seen.
    """
    value = (if_match or "").strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    return value == current


def settings_document_render(document: dict[str, Any]) -> bytes:
    """The file as pac writes it: two-space indented JSON, sections in pac's order, UTF-8."""
    ordered = {section: document.get(section, []) for section in _SECTIONS}
    return (json.dumps(ordered, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def settings_document_names(document: dict[str, Any]) -> dict[str, list[str]]:
    """The names a document sets values for, never the values (which may be secret)."""
    return {section: [item.get(_KEY_FIELD[section], "") for item in document.get(section, [])] for section in _SECTIONS}


def settings_document_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[str]]:
    """Which names were added, removed or given another value, for the audit log (names only)."""
    changes: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
    for section, key in _KEY_FIELD.items():
        before = {item[key]: item for item in old.get(section, []) if key in item}
        after = {item[key]: item for item in new.get(section, []) if key in item}
        changes["added"] += [f"{section}:{name}" for name in after if name not in before]
        changes["removed"] += [f"{section}:{name}" for name in before if name not in after]
        changes["changed"] += [f"{section}:{name}" for name in after if name in before and after[name] != before[name]]
    return changes


def manifest_settings_names(manifest: dict[str, Any] | None) -> dict[str, dict[str, dict[str, Any]]]:
    """What a solution version's manifest asks settings for, by section and folded name: its connection
    references (with their connector) and environment variable definitions (with type and whether the
    package carries a value or default)."""
    manifest = manifest or {}
    variables: dict[str, dict[str, Any]] = {}
    for variable in manifest.get("environment_variables") or []:
        name = str(variable.get("schema_name") or "")
        if name:
            variables[name.casefold()] = {
                "name": name,
                "type": variable.get("type_name") or "",
                "packaged": variable.get("current_value") is not None or variable.get("default_value") is not None,
            }
    references: dict[str, dict[str, Any]] = {}
    for reference in manifest.get("connection_references") or []:
        name = str(reference.get("logical_name") or "")
        if name:
            references[name.casefold()] = {"name": name, "connector_id": reference.get("connector_id") or ""}
    return {ENVIRONMENT_VARIABLES: variables, CONNECTION_REFERENCES: references}


def settings_document_coverage(document: dict[str, Any], manifest: dict[str, Any] | None) -> dict[str, Any]:
    """Compare a (validated) settings document with a version's manifest, per section:

    - `unknown`: names the document sets that the package does not have (a typo, or a setting of an
      older version);
    - `missing`: names the package has that the document does not set (or sets to ""), each with
      whether the package's own value or default would be used (environment variables only);
    - `connector_mismatch`: connection references bound through another connector than the package's.
    `complete` is true when nothing is missing without a packaged fallback.
    """
    expected = manifest_settings_names(manifest)
    result: dict[str, Any] = {"unknown": {}, "missing": {}, "connector_mismatch": [], "complete": True}
    for section, key in _KEY_FIELD.items():
        wanted = expected[section]
        given = {str(item.get(key, "")).casefold(): item for item in document.get(section, [])}
        result["unknown"][section] = [item[key] for folded, item in given.items() if folded not in wanted]
        missing = []
        for folded, facts in wanted.items():
            item = given.get(folded)
            value_field = "ConnectionId" if section == CONNECTION_REFERENCES else "Value"
            value = "" if item is None else item.get(value_field, "")
            if value == "":
                missing.append({**facts, "listed": item is not None})
                if not facts.get("packaged"):
                    result["complete"] = False
        result["missing"][section] = missing
    for folded, item in _given_references(document).items():
        reference = expected[CONNECTION_REFERENCES].get(folded)
        connector = item.get("ConnectorId", "")
        if reference and reference["connector_id"] and connector.casefold() != reference["connector_id"].casefold():
            result["connector_mismatch"].append(
                {"name": item["LogicalName"], "given": connector, "expected": reference["connector_id"]}
            )
    return result


def _given_references(document: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {str(item.get("LogicalName", "")).casefold(): item for item in document.get(CONNECTION_REFERENCES, [])}


def settings_document_from_manifest(manifest: dict[str, Any] | None, *, keep: dict[str, Any]) -> dict[str, Any]:
    """`keep` with an entry added for every name the manifest has and `keep` lacks (values left "" as
    `pac solution create-settings` does), so people fill in what is missing; nothing is removed."""
    expected = manifest_settings_names(manifest)
    document = {section: [dict(item) for item in keep.get(section, [])] for section in _SECTIONS}
    for section, key in _KEY_FIELD.items():
        present = {str(item.get(key, "")).casefold() for item in document[section]}
        for folded, facts in expected[section].items():
            if folded in present:
                continue
            if section == ENVIRONMENT_VARIABLES:
                document[section].append({"SchemaName": facts["name"], "Value": ""})
            else:
                document[section].append(
                    {"LogicalName": facts["name"], "ConnectionId": "", "ConnectorId": facts["connector_id"]}
                )
    return document
