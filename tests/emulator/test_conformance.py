"""Conformance: the emulator judged by the documentation.

Each case in tests/fixtures/reference/*.json is transcribed from an example or rule of docs/dataverse.md, tagged with
its source (DOC-ERR, REF-importsolutionasync, …). A case runs against a fresh org over HTTPS with plain ``requests``;
the token comes from the emulator's Entra endpoint. Case format (all keys optional except request/expect):

    {"name", "source",
     "setup": [{"install": "<zip>", "mode": "update"}, {"faults": {...}}, {"settings": {...}}],
     "request": {"method", "path" (relative to the org's api_url, or absolute from "/"), "auth": "org"|"none",
                 "headers": {...}, "json": {...}, "form": {...}},
     "expect": {"status", "headers": {name: value|"*"}, "keys": [dot paths], "values": {dot path: value},
                "regex": {dot path: pattern}, "types": {dot path: guid|string|int|bool|list|dict|zip},
                "empty_body": true},
     "then": [{"request": {...}, "wait_operation": "<dot path of the first response>", "expect": {...}}]}

Placeholders in strings: {base} (the main port) {idp} (the identity provider's origin) {tenant} {org}
{org_url} {client_id} {client_secret} {zip:<file>} (base64 of a test zip) and {response.<dot path>} (from the
case's first response). A path that is a whole https URL is sent as it is.
"""

from __future__ import annotations

import base64
import io
import json
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.emulator.packages import b64, corpus
from tests.support.emulator import EmulatorOrg, EmulatorServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reference"
PLACEHOLDER = re.compile(r"\{(zip:[^}]+|response\.[^}]+|base|idp|tenant|org|org_url|client_id|client_secret)\}")


def _cases() -> list[Any]:
    cases = []
    for path in sorted(FIXTURES.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        for case in document["cases"]:
            case.setdefault("source", document.get("source", ""))
            cases.append(pytest.param(case, id=f"{path.stem}:{case['name']}"))
    return cases


def _split_path(path: str) -> list[str]:
    """Dot path → keys; an annotation key (containing "@") runs to the end: "value.0.x@OData.Community…"."""
    parts = path.split(".")
    for index, part in enumerate(parts):
        if "@" in part:
            return [*parts[:index], ".".join(parts[index:])]
    return parts


def _get(data: Any, path: str) -> Any:
    current = data
    for part in _split_path(path):
        if isinstance(current, list):
            current = current[int(part)]
        elif isinstance(current, dict) and part in current:
            current = current[part]
        else:
            raise KeyError(path)
    return current


class Runner:
    def __init__(self, server: EmulatorServer, org: EmulatorOrg) -> None:
        self.server = server
        self.org = org
        self.first_response: Any = None

    def fill(self, value: Any) -> Any:
        if isinstance(value, str):
            return PLACEHOLDER.sub(lambda m: str(self._placeholder(m.group(1))), value)
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        if isinstance(value, dict):
            return {self.fill(k): self.fill(v) for k, v in value.items()}
        return value

    def _placeholder(self, name: str) -> str:
        if name.startswith("zip:"):
            return b64(corpus(name[4:]))
        if name.startswith("response."):
            return _get(self.first_response, name[len("response.") :])
        return {
            "base": self.server.base_url,
            "idp": self.server.idp_url,
            "tenant": self.org.tenant_id,
            "org": self.org.name,
            "org_url": self.org.url,
            "client_id": self.org.client_id,
            "client_secret": self.org.client_secret,
        }[name]

    def setup(self, steps: list[dict]) -> None:
        for step in steps:
            if "install" in step:
                self.org.install(corpus(step["install"]), mode=step.get("mode", "update"))
            if "faults" in step:
                self.org.set_faults(**step["faults"])
            if "settings" in step:
                self.org.settings(**step["settings"])

    def send(self, spec: dict) -> Any:
        spec = self.fill(spec)
        method = spec.get("method", "GET")
        path = spec["path"]
        if path.startswith("https://"):
            url = path
        else:
            url = self.server.base_url + path if path.startswith("/") else self.org.api_url + path
        headers = dict(spec.get("headers", {}))
        if spec.get("auth", "org") == "org":
            headers = {**self.org.headers(), **headers}
        return self.org.http.request(
            method,
            url,
            headers=headers,
            json=spec.get("json"),
            data=spec.get("form"),
            timeout=60,
            allow_redirects=False,
        )

    def check(self, response: Any, expect: dict, source: str) -> None:
        context = f"[{source}] {response.request.method} {response.url} -> {response.status_code} {response.text[:500]}"
        assert response.status_code == expect["status"], context
        for name, value in expect.get("headers", {}).items():
            actual = response.headers.get(name)
            assert actual is not None, f"header {name} missing: {context}"
            if value != "*":
                assert value in actual, f"header {name}={actual!r}, want {value!r}: {context}"
        if expect.get("empty_body"):
            assert response.content == b"", context
            return
        if not any(k in expect for k in ("keys", "values", "regex", "types")):
            return
        body = response.json()
        for path in expect.get("keys", []):
            try:
                _get(body, path)
            except (KeyError, IndexError, ValueError):
                pytest.fail(f"missing {path}: {context}")
        for path, value in self.fill(expect.get("values", {})).items():
            assert _get(body, path) == value, f"{path}: {context}"
        for path, pattern in self.fill(expect.get("regex", {})).items():
            assert re.search(pattern, str(_get(body, path))), f"{path} !~ {pattern}: {context}"
        for path, kind in expect.get("types", {}).items():
            _check_type(_get(body, path), kind, f"{path}: {context}")


def _check_type(value: Any, kind: str, context: str) -> None:
    if kind == "guid":
        uuid.UUID(str(value))
        assert str(value) == str(value).lower(), context
    elif kind == "string":
        assert isinstance(value, str), context
    elif kind == "int":
        assert isinstance(value, int) and not isinstance(value, bool), context
    elif kind == "bool":
        assert isinstance(value, bool), context
    elif kind == "list":
        assert isinstance(value, list), context
    elif kind == "dict":
        assert isinstance(value, dict), context
    elif kind == "zip":
        with zipfile.ZipFile(io.BytesIO(base64.b64decode(value))) as archive:
            names = {n.lower() for n in archive.namelist()}
        assert {"solution.xml", "customizations.xml", "[content_types].xml"} <= names, context
    else:
        raise AssertionError(f"unknown type {kind}")


@pytest.mark.parametrize("case", _cases())
def test_reference_case(case: dict, emulator: EmulatorServer, emulator_org: EmulatorOrg) -> None:
    runner = Runner(emulator, emulator_org)
    runner.setup(case.get("setup", []))
    response = runner.send(case["request"])
    runner.first_response = (
        response.json() if response.content and "json" in response.headers.get("Content-Type", "") else None
    )
    runner.check(response, case["expect"], case["source"])
    for follow_up in case.get("then", []):
        if "wait_operation" in follow_up:
            emulator_org.wait_for_operation(_get(runner.first_response, follow_up["wait_operation"]))
        runner.check(runner.send(follow_up["request"]), follow_up["expect"], case["source"])


def test_fixture_files_name_their_sources() -> None:
    """Every case says which documented example or rule it transcribes."""
    for path in FIXTURES.glob("*.json"):
        document = json.loads(path.read_text(encoding="utf-8"))
        assert document.get("reference"), path
        for case in document["cases"]:
            assert case.get("source") or document.get("source"), (path, case["name"])
