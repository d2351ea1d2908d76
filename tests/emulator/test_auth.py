"""Entra ID emulation: client credentials with msal, token claims, 401/403 on the Web API, auth code + PKCE."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import ssl
import time
import urllib.parse

import jwt
import pytest
import requests

from tests.support.emulator import EmulatorOrg, EmulatorServer


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _jwks_client(emulator: EmulatorServer) -> jwt.PyJWKClient:
    context = ssl.create_default_context(cafile=str(emulator.ca_file))
    return jwt.PyJWKClient(f"{emulator.authority}/discovery/v2.0/keys", ssl_context=context)


def test_msal_client_credentials_against_the_emulator(emulator: EmulatorServer, emulator_org: EmulatorOrg) -> None:
    app = emulator.msal_app(emulator_org.client_id, emulator_org.client_secret)
    first = app.acquire_token_for_client(scopes=[f"{emulator_org.url}/.default"])
    assert first["token_type"] == "Bearer"
    assert first["expires_in"] >= 600
    assert first["token_source"] == "identity_provider"
    again = app.acquire_token_for_client(scopes=[f"{emulator_org.url}/.default"])
    assert again["token_source"] == "cache"
    assert app.authority.tenant == emulator.tenant_id  # docs/dataverse.md §13.2 point 9

    response = emulator_org.http.get(
        emulator_org.api_url + "WhoAmI()", headers={"Authorization": f"Bearer {first['access_token']}"}
    )
    assert response.status_code == 200


def test_access_token_claims_and_signature(emulator: EmulatorServer, emulator_org: EmulatorOrg) -> None:
    token = emulator_org.token()
    key = _jwks_client(emulator).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=emulator_org.url)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert claims["aud"] == emulator_org.url
    assert claims["tid"] == emulator_org.tenant_id
    assert claims["appid"] == claims["azp"] == emulator_org.client_id
    assert claims["idtyp"] == "app"
    assert claims["exp"] - claims["iat"] >= 600
    assert claims["oid"]


def test_wrong_secret_gives_the_aadsts_error_shape_and_msal_returns_it(
    emulator: EmulatorServer, emulator_org: EmulatorOrg
) -> None:
    result = emulator.msal_app(emulator_org.client_id, "not-the-secret").acquire_token_for_client(
        scopes=[f"{emulator_org.url}/.default"]
    )
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert result["error_codes"] == [7000215]
    assert {"timestamp", "trace_id", "correlation_id"} <= set(result)


def test_unknown_client_and_unknown_resource(emulator: EmulatorServer, emulator_org: EmulatorOrg) -> None:
    session = emulator.session()
    token_url = f"{emulator.authority}/oauth2/v2.0/token"
    unknown = session.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": "00000000-1111-2222-3333-444444444444",
            "client_secret": "x",
            "scope": f"{emulator_org.url}/.default",
        },
    )
    assert unknown.status_code == 400
    assert unknown.json()["error_codes"] == [700016]
    resource = session.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": emulator_org.client_id,
            "client_secret": emulator_org.client_secret,
            "scope": f"{emulator.base_url}/no-such-org/.default",
        },
    )
    assert resource.status_code == 400
    assert resource.json()["error"] == "invalid_resource"
    assert resource.json()["error_codes"] == [500011]


def test_msal_with_validate_authority_false(emulator: EmulatorServer, emulator_org: EmulatorOrg) -> None:
    """docs/dataverse.md §13.2 point 2: validate_authority=False also skips instance discovery (and the alias
    lookup)."""
    import msal

    app = msal.ConfidentialClientApplication(
        emulator_org.client_id,
        client_credential=emulator_org.client_secret,
        authority=emulator_org.authority,
        validate_authority=False,
        http_client=emulator.session(),
    )
    assert "access_token" in app.acquire_token_for_client(scopes=[f"{emulator_org.url}/.default"])
    wrong = msal.ConfidentialClientApplication(
        emulator_org.client_id,
        client_credential="wrong",
        authority=emulator_org.authority,
        validate_authority=False,
        http_client=emulator.session(),
    ).acquire_token_for_client(scopes=[f"{emulator_org.url}/.default"])
    assert wrong["error"] == "invalid_client"  # a dict, not a KeyError from the alias lookup (13.2.2)


def test_unknown_tenant_discovery_is_refused(emulator: EmulatorServer) -> None:
    response = emulator.session().get(
        f"{emulator.idp_url}/{secrets.token_hex(8)}/v2.0/.well-known/openid-configuration"
    )
    assert response.status_code in (400, 404)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz"],
    ids=["missing", "empty", "garbage", "basic"],
)
def test_dataverse_refuses_missing_or_invalid_tokens(emulator_org: EmulatorOrg, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = emulator_org.http.get(emulator_org.api_url + "WhoAmI()", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith(
        f"Bearer authorization_uri={emulator_org.authority}/oauth2/authorize"
    )
    assert set(response.json()["error"]) == {"code", "message"}


def test_token_for_another_org_is_refused(emulator: EmulatorServer, emulator_org: EmulatorOrg) -> None:
    other = emulator.new_org()
    response = emulator_org.http.get(
        emulator_org.api_url + "WhoAmI()", headers={"Authorization": f"Bearer {other.token()}"}
    )
    assert response.status_code == 401
    assert "different resource" in response.json()["error"]["message"]


def test_expired_token_is_refused(emulator: EmulatorServer, emulator_org: EmulatorOrg) -> None:
    emulator.set_token_lifetime(1)
    try:
        token = emulator_org.token(refresh=True)
    finally:
        emulator.set_token_lifetime(3599)
    time.sleep(1.2)
    response = emulator_org.http.get(emulator_org.api_url + "WhoAmI()", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_revoked_tokens_are_refused_and_new_ones_work(emulator: EmulatorServer, emulator_org: EmulatorOrg) -> None:
    old = emulator_org.token()
    emulator.revoke_tokens()
    refused = emulator_org.http.get(emulator_org.api_url + "WhoAmI()", headers={"Authorization": f"Bearer {old}"})
    assert refused.status_code == 401
    assert emulator_org.get("WhoAmI()", headers={"Authorization": f"Bearer {emulator_org.token(refresh=True)}"}).ok


def test_a_client_that_is_not_an_application_user_gets_403(emulator: EmulatorServer, emulator_org: EmulatorOrg) -> None:
    stranger = emulator.register_client([])  # a valid app of the tenant, not added to the org
    token = emulator.token(emulator_org.url, stranger["client_id"], stranger["client_secret"])
    response = emulator_org.http.get(emulator_org.api_url + "WhoAmI()", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "0x80072560",
        "message": "The user is not a member of the organization.",
    }


def test_whoami_user_is_the_application_user(emulator_org: EmulatorOrg) -> None:
    user_id = emulator_org.get("WhoAmI()").json()["UserId"]
    user = emulator_org.get(f"systemusers({user_id})?$select=applicationid,accessmode,fullname").json()
    assert user["applicationid"] == emulator_org.client_id
    assert user["accessmode"] == 4  # Non-interactive


# --- authorization code + PKCE --------------------------------------------------------------------------
REDIRECT = "http://127.0.0.1:8000/accounts/entra/callback/"


@pytest.fixture
def sso(emulator: EmulatorServer) -> dict:
    emulator.add_identity("admin@emulator.test", ["ALM.Admin"], display_name="Ada Admin")
    emulator.add_identity("nobody@emulator.test", [], display_name="No Body")
    return emulator.register_client([], redirect_uris=[REDIRECT], display_name="portal sign-in")


def _sign_in(emulator: EmulatorServer, auth_uri: str, username: str) -> dict:
    session = emulator.session()
    page = session.get(auth_uri)
    assert page.status_code == 200
    assert username in page.text
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(auth_uri).query))
    answer = session.post(auth_uri.split("?")[0], data={**query, "username": username}, allow_redirects=False)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT)
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def test_msal_auth_code_flow_with_pkce_and_nonce(emulator: EmulatorServer, sso: dict) -> None:
    app = emulator.msal_app(sso["client_id"], sso["client_secret"])
    with pytest.warns(UserWarning, match="form_post"):  # msal nudges towards form_post; query mode must work too
        flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=REDIRECT)
    assert "code_challenge_method=S256" in flow["auth_uri"]
    answer = _sign_in(emulator, flow["auth_uri"], "admin@emulator.test")
    assert answer["state"] == flow["state"]
    result = app.acquire_token_by_auth_code_flow(flow, answer)
    assert "error" not in result, result

    key = _jwks_client(emulator).get_signing_key_from_jwt(result["id_token"])
    claims = jwt.decode(
        result["id_token"],
        key.key,
        algorithms=["RS256"],
        audience=sso["client_id"],
        issuer=f"{emulator.authority}/v2.0",
    )
    assert claims["roles"] == ["ALM.Admin"]
    assert claims["preferred_username"] == "admin@emulator.test"
    assert claims["name"] == "Ada Admin"
    assert claims["tid"] == emulator.tenant_id
    assert claims["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()  # msal sends the nonce's hash
    assert claims["exp"] > claims["iat"]


def test_identity_without_app_role_has_no_roles_claim_form_post(emulator: EmulatorServer, sso: dict) -> None:
    app = emulator.msal_app(sso["client_id"], sso["client_secret"])
    flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=REDIRECT, response_mode="form_post")
    session = emulator.session()
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(flow["auth_uri"]).query))
    page = session.post(flow["auth_uri"].split("?")[0], data={**query, "username": "nobody@emulator.test"})
    assert page.status_code == 200
    assert f'action="{REDIRECT}"' in page.text  # an auto-submitting form posts code and state to the app
    answer = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    result = app.acquire_token_by_auth_code_flow(flow, answer)
    assert "error" not in result, result
    assert "roles" not in _claims(result["id_token"])


def _manual_code(emulator: EmulatorServer, sso: dict, verifier: str) -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urllib.parse.urlencode(
        {
            "client_id": sso["client_id"],
            "response_type": "code",
            "redirect_uri": REDIRECT,
            "scope": "openid profile",
            "state": "s1",
            "nonce": "n1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return _sign_in(emulator, f"{emulator.authority}/oauth2/v2.0/authorize?{query}", "admin@emulator.test")["code"]


def _redeem(emulator: EmulatorServer, sso: dict, code: str, verifier: str) -> requests.Response:
    return emulator.session().post(
        f"{emulator.authority}/oauth2/v2.0/token",
        data={
            "grant_type": "authorization_code",
            "client_id": sso["client_id"],
            "client_secret": sso["client_secret"],
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "scope": "openid profile",
        },
    )


def test_wrong_code_verifier_is_refused_and_a_code_works_once(emulator: EmulatorServer, sso: dict) -> None:
    verifier = secrets.token_urlsafe(43)
    code = _manual_code(emulator, sso, verifier)
    wrong = _redeem(emulator, sso, code, secrets.token_urlsafe(43))
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert wrong.json()["error_codes"] == [501481]
    right = _redeem(emulator, sso, code, verifier)
    assert right.status_code == 200
    assert _claims(right.json()["id_token"])["nonce"] == "n1"
    again = _redeem(emulator, sso, code, verifier)
    assert again.status_code == 400
    assert again.json()["error_codes"] == [54005]


def test_unregistered_redirect_uri_shows_an_error_page(emulator: EmulatorServer, sso: dict) -> None:
    query = urllib.parse.urlencode(
        {
            "client_id": sso["client_id"],
            "response_type": "code",
            "redirect_uri": "https://evil.example/cb",
            "scope": "openid",
        }
    )
    response = emulator.session().get(f"{emulator.authority}/oauth2/v2.0/authorize?{query}")
    assert response.status_code == 400
    assert "AADSTS50011" in response.text
