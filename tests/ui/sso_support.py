"""Single sign-on fixtures shared by the SSO tests: the emulator's demo tenant as Entra ID (module scope),
the portal's settings pointing at it, the demo's linking, and a sign-in through the real flow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import reverse

from tests.support.emulator import start_emulator

REDIRECT_URI = "http://testserver/accounts/sso/callback/"


@pytest.fixture(scope="module", name="entra")
def entra_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, Any]]]:
    state = tmp_path_factory.mktemp("entra")
    with start_emulator(state, "--seed", "demo", "--sso-redirect-uri", REDIRECT_URI) as server:
        yield server, json.loads((Path(state) / "demo-credentials.json").read_text())


@pytest.fixture(name="demo_linking")
def demo_linking_fixture(sso_settings: Any, entra: tuple[Any, dict[str, Any]]) -> Any:
    """As `make run` sets it from the emulator's demo credentials: the demo's tenant and domain."""
    _, credentials = entra
    sso_settings.ALM_SSO_DEMO_LINKING = {"tenant_id": credentials["tenant_id"], "domain": credentials["tenant_name"]}
    return sso_settings


@pytest.fixture(name="sso_settings")
def sso_settings_fixture(settings: Any, entra: tuple[Any, dict[str, Any]]) -> Any:
    server, credentials = entra
    settings.ALM_SSO_AUTHORITY = credentials["authority"]
    settings.ALM_SSO_CLIENT_ID = credentials["sso_client"]["client_id"]
    settings.ALM_SSO_CLIENT_SECRET = credentials["sso_client"]["client_secret"]
    settings.ALM_DATAVERSE_CA_BUNDLE = str(server.ca_file)
    return settings


def sign_in(
    client: Client,
    server: Any,
    who: str,
    *,
    tamper_state: bool = False,
    drop_nonce: bool = False,
    domain: str = "contoso.example",
) -> Any:
    """Click the SSO button, pick `who` on the emulator's page, follow the answer back to the portal.
    `drop_nonce` removes the nonce from the authorize request, as an attacker in the middle could."""
    start = client.get(reverse("accounts:sso-login"))
    assert start.status_code == 302
    auth_uri = start["Location"]
    assert "code_challenge=" in auth_uri and "nonce=" in auth_uri and "state=" in auth_uri
    parts = urlsplit(auth_uri)
    query = parts.query
    if drop_nonce:
        query = "&".join(item for item in query.split("&") if not item.startswith("nonce="))
    page = server.session().get(f"{parts.scheme}://{parts.netloc}{parts.path}?{query}")
    assert f'data-testid="signin-{who}"' in page.text
    answer = server.session().post(
        f"{parts.scheme}://{parts.netloc}{parts.path}?{query}",
        data={"username": f"{who}@{domain}"},
        allow_redirects=False,
    )
    assert answer.status_code in (302, 303), answer.text[:300]
    back = urlsplit(answer.headers["Location"])
    assert back.path == "/accounts/sso/callback/"
    query = back.query.replace("state=", "state=x") if tamper_state else back.query
    return client.get(f"{back.path}?{query}")
