"""The outbound-URL policy (no server-side request forgery through environment URLs): what may be called, and where
sockets may go."""

from __future__ import annotations

import socket

import pytest
import requests

from alm_portal import outbound
from alm_portal.dataverse.auth import StaticTokenProvider
from alm_portal.dataverse.client import DataverseClient, RetryPolicy
from alm_portal.dataverse.errors import ConnectionFailed
from alm_portal.outbound import OutboundRefused, Purpose, check_url

DATAVERSE = Purpose.DATAVERSE
AUTHORITY = Purpose.AUTHORITY


@pytest.fixture(autouse=True)
def _no_loopback_by_default(settings):
    settings.ALM_ALLOW_LOOPBACK = False


@pytest.mark.parametrize(
    "url",
    [
        "https://contoso.crm.dynamics.com",
        "https://contoso.crm.dynamics.com/",
        "https://contoso-test.crm4.dynamics.com",
        "https://CONTOSO.CRM11.DYNAMICS.COM",
        "https://contoso.crm.dynamics.com:443",
        "https://contoso.api.crm4.dynamics.com",
        "https://contoso.crm.microsoftdynamics.us",
        "https://contoso.crm.appsplatform.us",
        "https://contoso.crm.dynamics.cn",
        "https://contoso.crm9.dynamics.com",
    ],
)
def test_dataverse_urls_that_pass(url):
    checked = check_url(url, purpose=DATAVERSE)
    assert checked.url == checked.url.lower()
    assert checked.port == 443
    assert not checked.url.endswith("/")
    assert ":443" not in checked.url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://contoso.crm.dynamics.com", "scheme"),
        ("ftp://contoso.crm.dynamics.com", "scheme"),
        ("//contoso.crm.dynamics.com", "scheme"),
        ("http://169.254.169.254/", "scheme"),
        ("https://169.254.169.254/", "ip_literal"),
        ("https://169.254.169.254/latest/meta-data", "ip_literal"),
        ("https://10.0.0.5", "ip_literal"),
        ("https://192.168.1.10", "ip_literal"),
        ("https://172.16.0.1", "ip_literal"),
        ("https://127.0.0.1", "loopback"),
        ("https://localhost", "loopback"),
        ("https://[::1]", "loopback"),
        ("https://[fd00::1]", "ip_literal"),
        ("https://[::ffff:10.0.0.5]", "ip_literal"),
        ("https://[2001:4860:4860::8888]", "ip_literal"),
        ("https://2130706433", "ip_literal"),
        ("https://0x7f000001", "ip_literal"),
        ("https://127.1", "ip_literal"),
        ("https://contoso.crm.dynamics.com@evil.com", "userinfo"),
        ("https://user:pass@contoso.crm.dynamics.com", "userinfo"),
        ("https://@contoso.crm.dynamics.com", "userinfo"),
        ("https://evil.com\\@contoso.crm.dynamics.com", "bad_characters"),
        ("https://contoso.crm.dynamics.com.evil.com", "host_not_allowed"),
        ("https://evilcrm.dynamics.com", "host_not_allowed"),
        ("https://contoso.evilcrm.dynamics.com", "host_not_allowed"),
        ("https://crm.dynamics.com", "host_not_allowed"),
        ("https://a.b.crm.dynamics.com", "host_not_allowed"),
        ("https://contoso.crm.dynamics.com.", "host"),
        ("https://contoso.crm123.dynamics.com", "host_not_allowed"),
        ("https://contoso.dynamics.com", "host_not_allowed"),
        ("https://contoso.crm.dynamics.com:8443", "port"),
        ("https://contoso.crm.dynamics.com:80", "port"),
        ("https://contoso.crm.dynamics.com:", "port"),
        ("https://contoso.crm.dynamics.com:99999", "port"),
        ("https://contoso.crm.dynamics.com/api/data/v9.2", "path"),
        ("https://contoso.crm.dynamics.com/?a=1", "query"),
        ("https://contoso.crm.dynamics.com/#x", "query"),
        ("https://xn--cntoso-2ve.crm.dynamics.com", "idn"),
        ("https://contoso.crm.dynamics.com\u3002evil.com", "non_ascii"),
        ("https://соntoso.crm.dynamics.com", "non_ascii"),  # Cyrillic с and о
        ("https://contoso.crm.dynamіcs.com", "non_ascii"),  # Cyrillic і
        ("https://contoso.crm.dynamics.com/\n", "bad_characters"),
        ("https://con toso.crm.dynamics.com", "bad_characters"),
        ("", "empty"),
    ],
)
def test_dataverse_urls_that_are_refused(url, reason):
    with pytest.raises(OutboundRefused) as refused:
        check_url(url, purpose=DATAVERSE)
    assert refused.value.reason == reason


def test_refusal_is_a_validation_error_with_a_stable_reason():
    with pytest.raises(OutboundRefused) as refused:
        check_url("https://contoso.crm.dynamics.com@evil.com", purpose=DATAVERSE)
    assert refused.value.status == 400
    assert refused.value.code == "validation_error"
    assert refused.value.details == {"reason": "userinfo"}


def test_extra_sovereign_suffixes_come_from_settings(settings):
    with pytest.raises(OutboundRefused):
        check_url("https://agency.crm.example.gov", purpose=DATAVERSE)
    settings.ALM_DATAVERSE_EXTRA_SUFFIXES = [".crm.example.gov"]
    assert check_url("https://agency.crm.example.gov", purpose=DATAVERSE).host == "agency.crm.example.gov"
    assert check_url("https://agency.crm.microsoftdynamics.us", purpose=DATAVERSE)  # built-in ones stay
    with pytest.raises(OutboundRefused):
        check_url("https://agency.crm.example.mil", purpose=DATAVERSE)


@pytest.mark.parametrize(
    "url",
    [
        "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47",
        "https://login.microsoftonline.com/contoso.onmicrosoft.com",
        "https://login.microsoftonline.us/72f988bf-86f1-41af-91ab-2d7cd011db47",
        "https://login.chinacloudapi.cn/72f988bf-86f1-41af-91ab-2d7cd011db47/",
        "https://login.partner.microsoftonline.cn/tenant",
    ],
)
def test_authorities_that_pass(url):
    assert check_url(url, purpose=AUTHORITY).url == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://login.microsoftonline.com", "path"),
        ("https://login.microsoftonline.com/common", "path"),
        ("https://login.microsoftonline.com/organizations", "path"),
        ("https://login.microsoftonline.com/tenant/oauth2/v2.0/token", "path"),
        ("https://login.microsoftonline.com.evil.com/tenant", "host_not_allowed"),
        ("https://login.microsoftonline.com@evil.com/tenant", "userinfo"),
        ("https://evil.com/tenant", "host_not_allowed"),
        ("https://contoso.crm.dynamics.com/tenant", "host_not_allowed"),
        ("http://login.microsoftonline.com/tenant", "scheme"),
        ("https://login.microsoftonline.com:8443/tenant", "port"),
        ("https://169.254.169.254/tenant", "ip_literal"),
    ],
)
def test_authorities_that_are_refused(url, reason):
    with pytest.raises(OutboundRefused) as refused:
        check_url(url, purpose=AUTHORITY)
    assert refused.value.reason == reason


def test_loopback_with_a_path_only_when_allowed(settings):
    url = "https://127.0.0.1:8443/contoso-dev/"
    with pytest.raises(OutboundRefused):
        check_url(url, purpose=DATAVERSE)
    settings.ALM_ALLOW_LOOPBACK = True
    checked = check_url(url, purpose=DATAVERSE)
    assert (checked.url, checked.port, checked.path, checked.is_loopback) == (
        "https://127.0.0.1:8443/contoso-dev",
        8443,
        "/contoso-dev",
        True,
    )
    assert check_url("https://[::1]:9000/org", purpose=DATAVERSE).url == "https://[::1]:9000/org"
    assert check_url("https://127.0.0.1:8443/tenant-id", purpose=AUTHORITY).is_loopback
    # Loopback never excuses the other rules.
    for bad in ("http://127.0.0.1:8443/org", "https://x@127.0.0.1:8443/org", "https://127.0.0.1:8443/org?x=1"):
        with pytest.raises(OutboundRefused):
            check_url(bad, purpose=DATAVERSE)
    # Other private addresses stay refused even with loopback on.
    with pytest.raises(OutboundRefused):
        check_url("https://10.0.0.5:8443/org", purpose=DATAVERSE)


def test_webhooks_accept_public_names_with_a_path():
    assert check_url("https://hooks.example.com/alm/123", purpose=Purpose.WEBHOOK).path == "/alm/123"
    for bad in ("https://10.1.2.3/hook", "https://hooks.example.com:8080/x", "http://hooks.example.com/x"):
        with pytest.raises(OutboundRefused):
            check_url(bad, purpose=Purpose.WEBHOOK)


# --- addresses ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "168.63.129.16",
        "10.0.0.5",
        "172.16.3.4",
        "192.168.0.1",
        "100.64.0.1",
        "127.0.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:10.0.0.5",
        "::ffff:169.254.169.254",
        "64:ff9b::a00:5",
        "2002:a00:5::1",
    ],
)
def test_addresses_that_are_refused(address):
    assert outbound.address_refusal(address, allow_loopback=False) is not None


@pytest.mark.parametrize("address", ["20.42.65.92", "13.107.6.152", "2603:1030::1", "8.8.8.8"])
def test_public_addresses_pass(address):
    assert outbound.address_refusal(address, allow_loopback=False) is None


def test_loopback_addresses_pass_only_when_allowed():
    assert outbound.address_refusal("127.0.0.1", allow_loopback=True) is None
    assert outbound.address_refusal("::1", allow_loopback=True) is None
    assert outbound.address_refusal("10.0.0.5", allow_loopback=True) is not None
    assert outbound.address_refusal("169.254.169.254", allow_loopback=True) is not None


def _fake_dns(monkeypatch, answers, calls=None):
    """Replace the DNS boundary: `answers` maps a host name to the addresses it "resolves" to."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if calls is not None:
            calls.append(host)
        if host in answers:
            result = []
            for address in answers[host]:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
                result.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
            return result
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_a_name_that_resolves_to_a_private_address_is_refused_before_connecting(monkeypatch):
    _fake_dns(monkeypatch, {"contoso.crm.dynamics.com": ["10.0.0.5"]})
    connects = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: connects.append(address))
    session = outbound.outbound_session()
    with pytest.raises(requests.exceptions.ConnectionError) as failure:
        session.get("https://contoso.crm.dynamics.com/api/data/v9.2/WhoAmI()")
    assert "refused by the outbound policy" in str(failure.value)
    assert "10.0.0.5" in str(failure.value)
    assert connects == []


def test_one_private_answer_among_public_ones_refuses_the_name(monkeypatch):
    _fake_dns(monkeypatch, {"contoso.crm.dynamics.com": ["20.42.65.92", "169.254.169.254"]})
    with pytest.raises(OutboundRefused) as refused:
        outbound.resolve_checked("contoso.crm.dynamics.com", 443, allow_loopback=False)
    assert refused.value.reason == "address"


def test_the_dataverse_client_reports_a_refused_address_as_a_failed_connection(monkeypatch):
    _fake_dns(monkeypatch, {"contoso.crm.dynamics.com": ["192.168.10.10"]})
    client = DataverseClient(
        "https://contoso.crm.dynamics.com",
        token_provider=StaticTokenProvider("token"),
        retry_policy=RetryPolicy(max_attempts=1),
    )
    outbound.pin_session(client._session)
    with pytest.raises(ConnectionFailed) as failure:
        client.who_am_i()
    assert "outbound policy" in str(failure.value)


def test_plain_http_never_leaves_the_process(monkeypatch):
    connects = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: connects.append(address))
    with pytest.raises(requests.exceptions.ConnectionError):
        outbound.outbound_session().get("http://example.com/")
    assert connects == []


def test_the_socket_goes_to_the_checked_address_while_tls_keeps_the_name(emulator, monkeypatch, settings):
    """DNS rebinding: the name resolves to loopback (allowed here) when checked, and the connection
    uses that very answer; no second lookup happens behind our back. TLS verifies `localhost`."""
    settings.ALM_ALLOW_LOOPBACK = True
    port = emulator.base_url.rsplit(":", 1)[1]
    calls = []
    _fake_dns(monkeypatch, {"localhost": ["127.0.0.1"]}, calls)
    session = outbound.outbound_session(ca_bundle=str(emulator.ca_file))
    response = session.get(f"https://localhost:{port}/_emulator/health")
    assert response.status_code == 200
    assert calls == ["localhost"]

    _fake_dns(monkeypatch, {"localhost": ["10.0.0.5"]}, calls)
    fresh = outbound.outbound_session(ca_bundle=str(emulator.ca_file))
    with pytest.raises(requests.exceptions.ConnectionError):
        fresh.get(f"https://localhost:{port}/_emulator/health")


def test_redirects_are_not_followed(monkeypatch):
    sent = []

    def send(self, request, **kwargs):
        sent.append(request.url)
        response = requests.Response()
        response.status_code = 302
        response.headers["Location"] = "https://169.254.169.254/latest/meta-data/"
        response.url = request.url
        response.request = request
        return response

    monkeypatch.setattr(outbound.PinnedHTTPAdapter, "send", send)
    response = outbound.outbound_session().get("https://hooks.example.com/alm")
    assert response.status_code == 302
    assert sent == ["https://hooks.example.com/alm"]


def test_proxies_are_refused():
    adapter = outbound.PinnedHTTPAdapter()
    with pytest.raises(OutboundRefused):
        adapter.proxy_manager_for("http://proxy.internal:3128")
