"""A token or an authorization code in a URL never reaches a log, and a token sent there is burnt.

The review sent `GET /api/v1/me/?access_token=<token>`: the API refused it, but gunicorn's access log kept
the whole token and the token stayed valid. Here the real gunicorn (the command line `make run`, the
image and compose use, from the repository root where gunicorn.conf.py is found) serves that request and
the sign-in callback's `?code=`, and its access log is read back.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection

from alm_portal.accounts.models import ApiToken
from alm_portal.audit.models import AuditEvent
from alm_portal.log_redaction import redact, redact_query
from alm_portal.logformat import JsonLogFormatter, TextLogFormatter
from tests.support.worker import _worker_env

ROOT = Path(__file__).resolve().parents[2]
ME = "/api/v1/me/"


def _token_id(text: str) -> int:
    return int(text.split("_")[1])


@pytest.mark.django_db
def test_a_token_sent_in_the_query_string_is_refused_and_revoked(api_client: Any, maker: Any, token_for: Any) -> None:
    text = token_for(maker, ["read", "request"])

    response = api_client.get(f"{ME}?access_token={text}")

    assert response.status_code == 401
    assert "was revoked" in response.json()["error"]["message"]
    again = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {text}")
    assert again.status_code == 401 and again.json()["error"]["code"] == "token_revoked"
    event = AuditEvent.objects.get(action="api_token.revoked", object_id=str(_token_id(text)))
    assert "URL" in event.after["reason"] and event.actor_id == maker.pk
    assert text not in str(event.after) and text.split("_", 2)[2] not in event.message


@pytest.mark.django_db
def test_a_wrong_token_in_the_query_string_revokes_nothing(api_client: Any, maker: Any, token_for: Any) -> None:
    text = token_for(maker)
    forged = text[:-3] + "abc"

    assert api_client.get(f"{ME}?token={forged}").status_code == 401

    assert ApiToken.objects.get(pk=_token_id(text)).revoked_at is None


def test_credential_parameters_and_token_text_are_masked_and_nothing_else() -> None:
    token = "alm_42_" + "x" * 43
    assert redact(f"GET /api/v1/me/?access_token={token}&page=2 HTTP/1.1") == (
        "GET /api/v1/me/?access_token=[redacted]&page=2 HTTP/1.1"
    )
    assert redact("/accounts/sso/callback/?code=0.AXgA-secret&state=s1") == (
        "/accounts/sso/callback/?code=[redacted]&state=s1"
    )
    assert redact_query("id_token=e30.e30.sig&client_secret=abc&reset_token=1&q=ok") == (
        "id_token=[redacted]&client_secret=[redacted]&reset_token=[redacted]&q=ok"
    )
    assert redact(f"pasted {token} into a path") == "pasted alm_[redacted] into a path"
    # Prose that merely contains "code=" is left alone; only URL parameters are masked.
    assert redact("import failed with code=0x80048d19") == "import failed with code=0x80048d19"


@pytest.mark.parametrize("formatter", [JsonLogFormatter(), TextLogFormatter()], ids=["json", "text"])
def test_our_log_lines_mask_them_too(formatter: logging.Formatter) -> None:
    token = "alm_7_" + "y" * 43
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("alm_portal.test_credentials_in_urls")
    logger.addHandler(handler)
    try:
        logger.warning("Bad Request: /api/v1/me/?access_token=%s", token)
        try:
            raise ValueError(f"could not open https://example.invalid/cb?code=c0de-s3cret&x={token}")
        except ValueError:
            logger.exception("callback failed")
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert token not in written and "c0de-s3cret" not in written
    assert written.count("[redacted]") >= 3


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def gunicorn(tmp_path: Path) -> Any:
    """gunicorn as Procfile, Dockerfile and compose start it (access log to a file here), on the test database."""
    port = _free_port()
    access_log = tmp_path / "access.log"
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "alm_portal.wsgi", "--bind", f"127.0.0.1:{port}"),
            *("--workers", "1", "--threads", "2", "--access-logfile", str(access_log)),
        ],
        cwd=ROOT,
        env=_worker_env({"DATABASE_URL": database_url}),
        stdout=(tmp_path / "gunicorn.out").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError((tmp_path / "gunicorn.out").read_text(errors="replace"))
        time.sleep(0.2)
    yield base, access_log
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=20)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_gunicorns_access_log_keeps_neither_tokens_nor_authorization_codes(
    gunicorn: Any, maker: Any, token_for: Any
) -> None:
    base, access_log = gunicorn
    text = token_for(maker, ["read"])
    code = "0.AXgAsecretAuthorizationCode-Zq"

    refused = requests.get(f"{base}{ME}?access_token={text}", timeout=10)
    requests.get(f"{base}/accounts/sso/callback/?code={code}&state=s-1", timeout=10, allow_redirects=False)
    requests.get(f"{base}{ME}", headers={"Authorization": f"Bearer {text}", "Referer": f"{base}/x?token={text}"})

    assert refused.status_code == 401
    deadline = time.monotonic() + 10
    while access_log.read_text().count("\n") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    written = access_log.read_text()
    assert written.count("\n") >= 3, written
    assert text not in written and text.split("_", 2)[2] not in written
    assert code not in written
    assert "access_token=[redacted]" in written and "code=[redacted]&state=s-1" in written
    assert ApiToken.objects.get(pk=_token_id(text)).revoked_at is not None
