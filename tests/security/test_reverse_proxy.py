"""The shipped reverse proxy (deploy/nginx/alm-portal.conf.template, used by docker-compose.yml) keeps gunicorn
answering while clients send their bodies slowly or never.

Finding 8 of the security review: ten sockets posting `Content-Length: 100000` to /accounts/login/ and never
finishing the body made /healthz time out until they closed (gunicorn's gthread workers exposed directly, as
compose published them); the same with ten slow uploads. Run against Debian's nginx (.ci/run installs it), in
front of a real gunicorn with the thread count the finding used.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import IN_CI
from tests.support.gunicorn import GunicornServer, free_port, start_gunicorn

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx" / "alm-portal.conf.template"
SLOW_CLIENTS = 10
THREADS = 4


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        reason = "needs Debian's nginx (apt-get install nginx; .ci/run installs it)"
        if IN_CI:
            pytest.fail(f"CI=true and a required program is missing: {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def render(template: str, **values: str) -> str:
    """What the nginx image's entrypoint does with ${VARIABLE}s (envsubst over the given variables only)."""
    for name, value in values.items():
        template = template.replace("${" + name + "}", value)
    assert "${ALM_" not in template, "a variable of the template was not filled in"
    return template


class Nginx:
    def __init__(self, workdir: Path, *, upstream_port: int) -> None:
        self.port = free_port()
        self.workdir = workdir
        for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
            (workdir / folder).mkdir(parents=True, exist_ok=True)
        (workdir / "alm-portal.conf").write_text(
            render(
                TEMPLATE.read_text(), ALM_PROXY_PORT=f"127.0.0.1:{self.port}", ALM_UPSTREAM=f"127.0.0.1:{upstream_port}"
            )
        )
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers write the temporary files below
        (workdir / "nginx.conf").write_text(
            f"""{user}worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {workdir}/logs/access.log;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    include {workdir}/alm-portal.conf;
}}
"""
        )
        binary = nginx_binary()
        checked = subprocess.run(
            [binary, "-t", "-p", str(workdir), "-c", str(workdir / "nginx.conf")], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stderr
        self.process = subprocess.Popen(
            [binary, "-p", str(workdir), "-c", str(workdir / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"nginx did not start:\n{(workdir / 'logs' / 'error.log').read_text()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[GunicornServer]:
    server = start_gunicorn(tmp_path, workers=1, threads=THREADS)
    yield server
    server.stop()


@pytest.fixture
def proxy(web: GunicornServer, tmp_path: Path) -> Iterator[Nginx]:
    nginx = Nginx(tmp_path / "nginx", upstream_port=web.port)
    yield nginx
    nginx.stop()


def slow_bodies(port: int, path: str, headers: dict[str, str], *, sent: bytes = b"") -> list[socket.socket]:
    """SLOW_CLIENTS connections that announce a 100,000-byte body, send `sent` of it, and stall."""
    opened = []
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    for _ in range(SLOW_CLIENTS):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Content-Length: 100000\r\n\r\n".encode() + sent)
        opened.append(sock)
    return opened


def healthz_answers(url: str, times: int = 5) -> list[int | str]:
    answers: list[int | str] = []
    for _ in range(times):
        try:
            answers.append(requests.get(url + "/healthz", timeout=5).status_code)
        except requests.RequestException as exc:
            answers.append(type(exc).__name__)
    return answers


def login_bodies(port: int) -> list[socket.socket]:
    return slow_bodies(port, "/accounts/login/", {"Content-Type": "application/x-www-form-urlencoded"}, sent=b"user")


def upload_bodies(port: int) -> list[socket.socket]:
    boundary = "alm-slow-upload"
    start = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.zip"\r\n'
        "Content-Type: application/zip\r\n\r\nPK\x03\x04"
    ).encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": "Bearer alm_1_" + "x" * 43}
    return slow_bodies(port, "/api/v1/versions/", headers, sent=start)


@pytest.mark.parametrize("clients", [login_bodies, upload_bodies], ids=["sign-in-bodies", "uploads"])
def test_ten_slow_bodies_through_the_proxy_leave_healthz_answering(web: GunicornServer, proxy: Nginx, clients) -> None:
    sockets = clients(proxy.port)
    try:
        time.sleep(1)  # let every body start; nginx holds them, gunicorn never sees them
        assert healthz_answers(proxy.url) == [200] * 5
        assert requests.get(proxy.url + "/readyz", timeout=10).status_code in (200, 503)
    finally:
        for sock in sockets:
            sock.close()


def test_the_same_slow_bodies_sent_to_gunicorn_directly_stop_healthz(web: GunicornServer) -> None:
    """The check above is meaningful: without the proxy, these clients hold every thread (finding 8)."""
    sockets = login_bodies(web.port)
    try:
        time.sleep(1)
        assert 200 not in healthz_answers(web.url, times=2)
    finally:
        for sock in sockets:
            sock.close()
    assert healthz_answers(web.url, times=1) == [200]  # and it recovers once they are gone


def test_the_proxy_passes_requests_through_with_the_client_address(web: GunicornServer, proxy: Nginx) -> None:
    answer = requests.get(proxy.url + "/api/v1/me/", timeout=10)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "not_authenticated"
    assert answer.headers["X-Request-ID"]
    assert "nginx/" not in answer.headers.get("Server", "")  # server_tokens off


def test_compose_puts_the_proxy_in_front_and_publishes_only_it() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    proxy = services["proxy"]
    assert proxy["image"].startswith("nginx:")
    assert any("deploy/nginx/alm-portal.conf.template" in volume for volume in proxy["volumes"])
    assert proxy["environment"]["ALM_UPSTREAM"] == "web:8000"
    assert "ports" in proxy and "ports" not in services["web"]
    environment = {**compose["x-app"]["environment"], **services["web"].get("environment", {})}
    assert environment["ALM_TRUSTED_PROXY_HEADER"] == "X-Real-IP"
