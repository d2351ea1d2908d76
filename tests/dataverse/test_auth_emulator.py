"""MSAL client-credentials tokens against the emulator's Entra ID (docs/dataverse.md §13), over real HTTPS."""

from __future__ import annotations

import datetime as dt
import uuid

import msal
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from alm_portal.dataverse import auth, errors
from alm_portal.dataverse.auth import (
    ClientCertificate,
    ClientCredentials,
    Cloud,
    MsalTokenProvider,
    authority_url,
    registered_application_count,
)
from alm_portal.dataverse.client import DataverseClient
from tests.support.emulator import EmulatorOrg, EmulatorServer


def credentials_of(org: EmulatorOrg, *, secret: str | None = None) -> ClientCredentials:
    return ClientCredentials(org.authority, org.client_id, secret if secret is not None else org.client_secret)


def provider_for(org: EmulatorOrg, **kwargs: object) -> MsalTokenProvider:
    return MsalTokenProvider(credentials_of(org, **kwargs), ca_bundle=str(org.server.ca_file))  # type: ignore[arg-type]


def cached_access_tokens(app: msal.ConfidentialClientApplication) -> list[dict]:
    return list(app.token_cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN))


def test_one_application_per_credential_shares_the_token_cache(emulator_org: EmulatorOrg) -> None:
    first, second = provider_for(emulator_org), provider_for(emulator_org)
    assert first.application() is second.application()
    scope = f"{emulator_org.url}/.default"
    assert first.get_token(scope) == second.get_token(scope)
    assert len(cached_access_tokens(first.application())) == 1

    clients = [
        DataverseClient(
            emulator_org.url, credentials=credentials_of(emulator_org), ca_bundle=str(emulator_org.server.ca_file)
        )
        for _ in range(2)
    ]
    for client in clients:
        client.who_am_i()
    assert len(cached_access_tokens(first.application())) == 1


def test_a_rotated_secret_gets_a_new_application(emulator_org: EmulatorOrg) -> None:
    current = provider_for(emulator_org).application()
    count = registered_application_count()
    rotated = provider_for(emulator_org, secret=emulator_org.client_secret + "-rotated").application()
    assert rotated is not current
    assert registered_application_count() == count + 1
    assert provider_for(emulator_org, secret=emulator_org.client_secret + "-rotated").application() is rotated


def test_a_wrong_secret_is_a_token_error_naming_the_aadsts_code(emulator_org: EmulatorOrg) -> None:
    provider = provider_for(emulator_org, secret="wrong-" + uuid.uuid4().hex)
    with pytest.raises(errors.TokenError) as raised:
        provider.get_token(f"{emulator_org.url}/.default")
    assert raised.value.aadsts_code == "AADSTS7000215"
    assert raised.value.error == "invalid_client"
    assert raised.value.correlation_id
    assert not raised.value.transient
    assert "wrong-" not in str(raised.value)  # the secret never appears in the error


def test_an_unknown_client_is_aadsts700016(emulator: EmulatorServer) -> None:
    org = emulator.new_org()
    unknown = ClientCredentials(org.authority, str(uuid.uuid4()), "whatever")
    client = DataverseClient(org.url, credentials=unknown, ca_bundle=str(emulator.ca_file))
    with pytest.raises(errors.TokenError) as raised:
        client.who_am_i()
    assert raised.value.aadsts_code == "AADSTS700016"


def test_a_401_drops_the_cached_token_and_acquires_once_more(emulator_org: EmulatorOrg) -> None:
    client = DataverseClient(
        emulator_org.url, credentials=credentials_of(emulator_org), ca_bundle=str(emulator_org.server.ca_file)
    )
    client.who_am_i()
    app = MsalTokenProvider(credentials_of(emulator_org), ca_bundle=str(emulator_org.server.ca_file)).application()
    (old,) = cached_access_tokens(app)
    before = emulator_org.counters()["requests"][emulator_org.name]

    emulator_org.server.revoke_tokens()  # every issued token now gets 401 from the Web API
    assert client.who_am_i()

    (new,) = cached_access_tokens(app)
    assert new["secret"] != old["secret"]
    assert emulator_org.counters()["requests"][emulator_org.name] == before + 2  # the 401 and the retry


def test_the_authority_is_verified_against_the_configured_ca(
    emulator_org: EmulatorOrg, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator_org.server.ca_file))  # must not rescue a wrong bundle
    # A credential not used before in this process, so its application is built with certifi's bundle.
    fresh = ClientCredentials(emulator_org.authority, emulator_org.client_id, emulator_org.client_secret + "-x")
    with pytest.raises(errors.TlsError):
        MsalTokenProvider(fresh, ca_bundle=None).get_token(f"{emulator_org.url}/.default")


def test_the_scope_is_the_environment_url_default(emulator_org: EmulatorOrg) -> None:
    client = DataverseClient(
        emulator_org.url + "/", credentials=credentials_of(emulator_org), ca_bundle=str(emulator_org.server.ca_file)
    )
    assert client.scope == f"{emulator_org.url}/.default"
    assert client.who_am_i()


def _self_signed_certificate() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alm-portal test app")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM).decode()


def test_a_certificate_credential_signs_a_client_assertion(emulator_org: EmulatorOrg) -> None:
    key_pem, cert_pem = _self_signed_certificate()
    certificate = ClientCertificate(private_key_pem=key_pem, certificate_pem=cert_pem)
    assert certificate.msal_credential() == {"private_key": key_pem, "public_certificate": cert_pem}
    assert "PRIVATE KEY" not in repr(certificate)
    credentials = ClientCredentials(emulator_org.authority, emulator_org.client_id, certificate=certificate)
    provider = MsalTokenProvider(credentials, ca_bundle=str(emulator_org.server.ca_file))
    # The emulator's token endpoint only knows client secrets, so the assertion reaches it and is refused
    # as a missing secret: proof that msal built and sent a certificate assertion instead of a secret.
    with pytest.raises(errors.TokenError) as raised:
        provider.get_token(f"{emulator_org.url}/.default")
    assert raised.value.error == "invalid_client"
    legacy = ClientCertificate(private_key_pem=key_pem, certificate_pem=cert_pem, sha1_thumbprint="AB" * 20)
    assert legacy.msal_credential()["thumbprint"] == "AB" * 20


def test_credentials_and_authorities_are_validated() -> None:
    assert authority_url("contoso.onmicrosoft.com") == "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    assert authority_url("t", Cloud.US_GOVERNMENT) == "https://login.microsoftonline.us/t"
    assert authority_url("t", Cloud.CHINA) == "https://login.chinacloudapi.cn/t"
    for tenant in ("common", "organizations", " "):
        with pytest.raises(ValueError):
            authority_url(tenant)
    with pytest.raises(ValueError):
        ClientCredentials("https://login.microsoftonline.com/t", "app")  # neither secret nor certificate
    with pytest.raises(ValueError):
        ClientCredentials("http://127.0.0.1/t", "app", "s")  # msal refuses http authorities (13.2)
    with pytest.raises(ValueError):
        ClientCredentials("https://login.microsoftonline.com", "app", "s")  # no tenant segment
    public = ClientCredentials("https://LOGIN.microsoftonline.com/t/", "app", "s")
    assert public.is_microsoft_authority and public.normalized_authority == "https://login.microsoftonline.com/t"
    assert not ClientCredentials("https://127.0.0.1:8443/t", "app", "s").is_microsoft_authority
    assert "sssecret" not in repr(ClientCredentials("https://127.0.0.1:8443/t", "app", "sssecret"))
    assert auth.resolve_ca_bundle(None).endswith(".pem")
