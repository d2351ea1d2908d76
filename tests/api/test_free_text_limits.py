"""What an API caller sends is used whole or refused in words, never cut or ignored (issue 13, item 2).

Walks every operation of the OpenAPI document that takes a body (drf-spectacular enumerates them from
the URL resolver, as the authorization matrix does) and every free-text property in it, nested ones
too:
- the schema states the limit (`maxLength`), so a client can know it before sending;
- one character over the limit answers 400 with the limit in the field's error, as the caller whose
  role may use the operation (a refusal for a missing other field is fine: DRF reports every field);
- a field the operation does not have answers 400 naming it, instead of being dropped while the
  request succeeds.
And an approval's comment at the limit is stored whole, in the approval and its audit event.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from alm_portal.audit.models import AuditEvent
from deployments.models import Approval
from tests.api.matrix_support import concrete
from tests.api.test_authorization_matrix import SCOPE_OWNERS, required_scope
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    contoso_fixture,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
    success_package,
)

pytestmark = pytest.mark.django_db

WRITE_METHODS = ("post", "put", "patch")
# Strings that are not free text: the format or pattern says what they hold.
NOT_FREE_TEXT_FORMATS = ("date-time", "date", "time", "binary", "uuid", "uri", "email")


def _schema() -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator

    schema: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    return schema


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node or ("allOf" in node and len(node["allOf"]) == 1):
        ref = node["$ref"] if "$ref" in node else node["allOf"][0].get("$ref")
        if ref is None:
            node = node["allOf"][0]
            continue
        node = schema["components"]["schemas"][ref.split("/")[-1]]
    return node


def _free_text(
    schema: dict[str, Any], node: dict[str, Any], path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """(path, property) of every free-text string a body may carry; "[]" in a path is a list item."""
    node = _resolve(schema, node)
    found: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    for name, prop in (node.get("properties") or {}).items():
        if prop.get("readOnly"):
            continue
        prop = _resolve(schema, prop)
        if prop.get("type") == "array":
            item = _resolve(schema, prop.get("items") or {})
            if item.get("type") == "object" or "properties" in item:
                found += _free_text(schema, item, (*path, name, "[]"))
            elif item.get("type") == "string" and _is_free(item):
                found.append(((*path, name, "[]"), item))
        elif prop.get("type") == "object" or "properties" in prop:
            found += _free_text(schema, prop, (*path, name))
        elif prop.get("type") == "string" and _is_free(prop):
            found.append(((*path, name), prop))
    return found


def _is_free(prop: dict[str, Any]) -> bool:
    return "enum" not in prop and prop.get("format") not in NOT_FREE_TEXT_FORMATS and "pattern" not in prop


def _body(path: tuple[str, ...], value: str) -> Any:
    """The smallest body that carries `value` at `path`."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if head == "[]":
        return [_body(rest, value)]
    return {head: _body(rest, value)}


def _operations() -> list[tuple[str, str, str, dict[str, Any], dict[str, Any]]]:
    """(METHOD, path, content type, body schema, the whole schema) of every operation with a body."""
    schema = _schema()
    found = []
    for path, item in sorted(schema["paths"].items()):
        for method, operation in sorted(item.items()):
            if method not in WRITE_METHODS:
                continue
            content = (operation.get("requestBody") or {}).get("content") or {}
            for content_type in ("application/json", "multipart/form-data"):
                if content_type in content:
                    found.append((method.upper(), path, content_type, content[content_type]["schema"], schema))
                    break
    return found


def _client(api_world: Any, method: str, path: str) -> APIClient:
    owner = SCOPE_OWNERS[required_scope(method, path.replace("{id}", "{pk}"))]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_world.tokens[owner]}")
    return client


def _send(client: APIClient, method: str, url: str, body: Any, content_type: str) -> Any:
    fmt = "multipart" if content_type.startswith("multipart") else "json"
    with transaction.atomic():
        response = getattr(client, method.lower())(url, body, format=fmt)
        transaction.set_rollback(True)
    return response


@pytest.fixture
def quiet_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals are audited in a transaction of their own, which cannot open inside the savepoint."""
    monkeypatch.setattr("alm_portal.api.exceptions.record_outcome", lambda **kwargs: None)


def test_every_free_text_field_of_the_api_states_its_limit() -> None:
    missing = [
        f"{method} {path} {'.'.join(field)}"
        for method, path, _, body, schema in _operations()
        for field, prop in _free_text(schema, body)
        if "maxLength" not in prop
    ]
    assert len(_operations()) > 30
    assert missing == [], "free text without a stated limit:\n" + "\n".join(missing)


def test_one_character_over_the_limit_is_refused_with_the_limit_in_words(api_world: Any, quiet_refusals: None) -> None:
    problems = []
    checked = 0
    for method, path, content_type, body_schema, schema in _operations():
        url = concrete(path.replace("{id}", "{pk}"), api_world.ids)
        client = _client(api_world, method, path)
        for field, prop in _free_text(schema, body_schema):
            if "maxLength" not in prop:
                continue  # the test above names it
            limit = prop["maxLength"]
            if content_type.startswith("multipart") and len(field) > 1:
                continue  # a form body is flat
            response = _send(client, method, url, _body(field, "w" * (limit + 1)), content_type)
            checked += 1
            details = (response.json().get("error") or {}).get("details") or {} if response.content else {}
            name = next(part for part in reversed(field) if part != "[]")
            named = [text for key, text in _flatten(details) if name in key and str(limit) in str(text)]
            if response.status_code != 400 or not named:
                problems.append(f"{method} {path} {'.'.join(field)}: {response.status_code} {details}")
    assert checked > 50
    assert problems == [], "\n".join(problems)


def _flatten(details: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """DRF's nested error details as (dotted key, messages)."""
    if isinstance(details, dict):
        return [
            pair
            for key, value in details.items()
            for pair in _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        ]
    if isinstance(details, list) and details and all(isinstance(item, (dict, list)) for item in details):
        return [pair for index, item in enumerate(details) for pair in _flatten(item, f"{prefix}[{index}]")]
    return [(prefix, details)]


def test_a_field_the_operation_does_not_have_is_refused_not_ignored(api_world: Any, quiet_refusals: None) -> None:
    problems = []
    for method, path, content_type, body_schema, schema in _operations():
        if _resolve(schema, body_schema).get("type") != "object":
            continue
        url = concrete(path.replace("{id}", "{pk}"), api_world.ids)
        response = _send(_client(api_world, method, path), method, url, {"justfication": "typo"}, content_type)
        details = (response.json().get("error") or {}).get("details") or {} if response.content else {}
        if response.status_code != 400 or "justfication" not in details:
            problems.append(f"{method} {path}: {response.status_code} {details}")
    assert problems == [], "\n".join(problems)


def test_an_approval_comment_at_the_limit_is_stored_whole_and_one_over_is_refused(contoso: Any, token_for: Any) -> None:
    promotion = contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(contoso.approvers[0], scopes=['read', 'approve'])}")
    url = f"/api/v1/promotions/{promotion.pk}/approve/"

    over = client.post(url, {"comment": "c" * 2001}, format="json")
    assert over.status_code == 400
    assert "2000" in str(over.json()["error"]["details"]["comment"])
    assert not Approval.objects.filter(promotion=promotion).exists()

    whole = "".join(f"line {index:04d}\n" for index in range(200))[:1999] + "."
    response = client.post(url, {"comment": whole}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["approvals"][0]["comment"] == whole
    assert Approval.objects.get(promotion=promotion).comment == whole
    event = AuditEvent.objects.get(action="promotion.approved", object_id=str(promotion.pk))
    assert event.after["comment"] == whole
