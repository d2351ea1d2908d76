"""pytest fixtures that run the Dataverse + Entra ID emulator (``python -m dataverse_emulator``) over real HTTPS.

tests/conftest.py loads this module (``pytest_plugins = ["tests.support.emulator"]``), so every test can ask
for these fixtures:

``emulator`` (session scope) → :class:`EmulatorServer`
    One emulator process for the whole test session, started with ``--port 0`` and a state file in a
    temporary directory, async solution operations lasting 0.5 s. Stopped (its process group killed) at the
    end of the session. Attributes: ``base_url`` (the main port: admin API, path-addressed orgs), ``idp_url``
    (the identity provider's own port), ``ca_file``, ``state_file``, ``tenant_id`` (a tenant created for the
    session), ``authority`` (``https://127.0.0.1:IDP_PORT/<tenant>``), ``process``. Methods:
    ``admin(method, path, json=None)`` (any admin route, see dataverse_emulator/README.md), ``session()``
    (a ``requests.Session`` that trusts the emulator CA), ``new_org(...)`` (a fresh org plus credential →
    :class:`EmulatorOrg`), ``create_org``, ``register_client``, ``add_identity``, ``set_faults``,
    ``clear_faults``, ``counters``, ``import_count``, ``revoke_tokens``, ``set_token_lifetime``,
    ``token(org_url, client_id, client_secret)`` (client credentials by plain POST) and
    ``msal_app(client_id, client_secret)`` (an ``msal.ConfidentialClientApplication`` wired as docs/dataverse.md
    §13.2 explains: ``instance_discovery=False`` and an ``http_client`` that trusts the CA).

``emulator_org`` (function scope) → :class:`EmulatorOrg`
    A new org with its own client credential for one test, so tests never see each other's solutions,
    faults or counters. It lives at the root of its own origin (its own port, as a real environment is
    ``https://<org>.crm.dynamics.com``); ``new_org(addressing="path")`` gives one under the main port's
    ``/<org>`` instead. Attributes: ``name``, ``url`` (the org base URL, ``https://127.0.0.1:ORG_PORT``),
    ``api_url`` (``<url>/api/data/v9.2/``), ``tenant_id``, ``authority``, ``client_id``, ``client_secret``,
    ``server``. Methods: ``token()``, ``headers()`` (the Web API headers of docs/dataverse.md §1.2 with a bearer token),
    ``get(path)``, ``post(path, json=…)``, ``patch(path, json=…)`` (paths relative to ``api_url``),
    ``install(zip_bytes, mode="update")`` (install at once through the admin API), ``set_faults(**faults)``,
    ``clear_faults()``, ``settings(**values)``, ``counters()``, ``import_count(solution, version=None)``,
    ``wait_for_operation(asyncoperationid)`` (poll until statecode 3), ``complete_operation(id)``.

``start_emulator(state_dir, *args)`` (a context manager, not a fixture)
    Runs a separate emulator process, for tests that stop and restart it or need ``--seed demo``.

Notes for client tests: pass ``verify=server.ca_file`` or use ``server.session()``. Some machines set
``REQUESTS_CA_BUNDLE``, which overrides a Session's ``verify`` (docs/dataverse.md §13.2 point 7), so ``session()`` turns
``trust_env`` off. Build a fresh msal app per test: msal caches 400 answers for 60 s per app (docs/dataverse.md §13.2
point 6).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_PREFIX = "dataverse-emulator listening on "
TEST_OPERATION_DURATION = 0.5


class EmulatorServer:
    """A running emulator process and helpers around its admin API."""

    def __init__(self, process: subprocess.Popen, base_url: str, ca_file: Path, state_file: Path, log_file: Path):
        self.process = process
        self.base_url = base_url
        self.ca_file = ca_file
        self.state_file = state_file
        self.log_file = log_file
        self._session = self.session()
        self.idp_url = str(self.admin("GET", "/health")["idp_url"])
        self.tenant_id = self.create_tenant(name="emulator-tests")

    # --- plumbing -----------------------------------------------------------------------------------
    def session(self) -> requests.Session:
        """A requests.Session that trusts the emulator's CA (and ignores REQUESTS_CA_BUNDLE)."""
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca_file)
        return session

    def admin(self, method: str, path: str, json: Any = None, expect: int | tuple[int, ...] | None = None) -> Any:
        """Call an admin route, e.g. ``admin("POST", "/orgs", {...})``; raises unless the status is 2xx/expected."""
        response = self._session.request(method, f"{self.base_url}/_emulator{path}", json=json, timeout=30)
        expected = (expect,) if isinstance(expect, int) else expect
        if (expected and response.status_code not in expected) or (not expected and response.status_code >= 300):
            raise AssertionError(f"admin {method} {path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else None

    @property
    def authority(self) -> str:
        return f"{self.idp_url}/{self.tenant_id}"

    # --- set-up ---------------------------------------------------------------------------------------
    def create_tenant(self, tenant_id: str | None = None, name: str | None = None) -> str:
        return self.admin("POST", "/tenants", {"tenant_id": tenant_id, "name": name})["tenant_id"]

    def create_org(
        self,
        name: str | None = None,
        *,
        tenant_id: str | None = None,
        operation_duration: float = TEST_OPERATION_DURATION,
        import_job_id_on_async: str | None = None,
        addressing: str | None = None,
    ) -> dict:
        body: dict[str, Any] = {
            "name": name or f"org-{uuid.uuid4().hex[:10]}",
            "tenant_id": tenant_id or self.tenant_id,
            "operation_duration": operation_duration,
        }
        if import_job_id_on_async:
            body["import_job_id_on_async"] = import_job_id_on_async
        if addressing:
            body["addressing"] = addressing
        return self.admin("POST", "/orgs", body)

    def register_client(
        self,
        orgs: list[str],
        *,
        tenant_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        redirect_uris: list[str] | None = None,
        display_name: str | None = None,
    ) -> dict:
        body: dict[str, Any] = {"tenant_id": tenant_id or self.tenant_id, "orgs": orgs}
        if client_id:
            body["client_id"] = client_id
        if client_secret:
            body["client_secret"] = client_secret
        if redirect_uris is not None:
            body["redirect_uris"] = redirect_uris
        if display_name:
            body["display_name"] = display_name
        return self.admin("POST", "/clients", body)

    def add_identity(
        self, username: str, roles: list[str], *, display_name: str | None = None, tenant_id: str | None = None
    ) -> dict:
        body = {"username": username, "roles": roles, "display_name": display_name}
        return self.admin("POST", f"/tenants/{tenant_id or self.tenant_id}/identities", body)

    def new_org(self, name: str | None = None, **kwargs: Any) -> EmulatorOrg:
        """A new org in the session tenant plus a client credential allowed on it."""
        org = self.create_org(name, **kwargs)
        client = self.register_client([org["name"]], tenant_id=org["tenant_id"])
        return EmulatorOrg(
            server=self,
            name=org["name"],
            url=org["url"],
            api_url=org["api_url"],
            tenant_id=org["tenant_id"],
            authority=org["authority"],
            client_id=client["client_id"],
            client_secret=client["client_secret"],
        )

    # --- behaviour switches -----------------------------------------------------------------------------
    def set_faults(self, org: str, **faults: Any) -> dict:
        """E.g. ``set_faults(org, throttle={"code": "requests", "retry_after": 2, "count": 1})``."""
        return self.admin("POST", f"/orgs/{org}/faults", faults)

    def clear_faults(self, org: str) -> dict:
        return self.admin("DELETE", f"/orgs/{org}/faults")

    def revoke_tokens(self) -> None:
        """Every token issued so far becomes invalid for Dataverse (401); new ones work."""
        self.admin("POST", "/tokens/revoke")

    def set_token_lifetime(self, seconds: int) -> None:
        self.admin("POST", "/settings", {"token_lifetime": seconds})

    def counters(self, org: str | None = None) -> dict:
        return self.admin("GET", f"/orgs/{org}/counters" if org else "/counters")

    def import_count(self, org: str, solution: str, version: str | None = None) -> int:
        return sum(
            entry["count"]
            for entry in self.counters(org)["imports"]
            if entry["solution"] == solution and (version is None or entry["version"] == version)
        )

    # --- tokens -----------------------------------------------------------------------------------------
    def token(self, org_url: str, client_id: str, client_secret: str, tenant_id: str | None = None) -> str:
        response = self._session.post(
            f"{self.idp_url}/{tenant_id or self.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
                "scope": f"{org_url}/.default",
            },
            timeout=30,
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def msal_app(self, client_id: str, client_secret: str, tenant_id: str | None = None, **kwargs: Any) -> Any:
        import msal

        return msal.ConfidentialClientApplication(
            client_id,
            client_credential=client_secret,
            authority=f"{self.idp_url}/{tenant_id or self.tenant_id}",
            instance_discovery=False,
            http_client=self.session(),
            **kwargs,
        )

    # --- lifecycle --------------------------------------------------------------------------------------
    def stop(self) -> int | None:
        """SIGTERM the emulator's process group, then SIGKILL if it does not exit within 10 s."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode


@dataclass
class EmulatorOrg:
    """One org of the emulator and a client credential that is an application user there."""

    server: EmulatorServer
    name: str
    url: str
    api_url: str
    tenant_id: str
    authority: str
    client_id: str
    client_secret: str
    _token: str | None = field(default=None, repr=False)
    _session: requests.Session | None = field(default=None, repr=False)

    @property
    def http(self) -> requests.Session:
        if self._session is None:
            self._session = self.server.session()
        return self._session

    def token(self, refresh: bool = False) -> str:
        if self._token is None or refresh:
            self._token = self.server.token(self.url, self.client_id, self.client_secret, self.tenant_id)
        return self._token

    def headers(self, **extra: str) -> dict[str, str]:
        """docs/dataverse.md §1.2: Accept, OData-MaxVersion, OData-Version, If-None-Match, plus the bearer token."""
        return {
            "Authorization": f"Bearer {self.token()}",
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            "If-None-Match": "null",
            **extra,
        }

    def get(self, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        return self.http.get(self.api_url + path, headers={**self.headers(), **(headers or {})}, timeout=30, **kwargs)

    def post(
        self, path: str, json: Any = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        return self.http.post(
            self.api_url + path, json=json, headers={**self.headers(), **(headers or {})}, timeout=60, **kwargs
        )

    def patch(
        self, path: str, json: Any = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        return self.http.patch(
            self.api_url + path, json=json, headers={**self.headers(), **(headers or {})}, timeout=30, **kwargs
        )

    def install(self, package: bytes, mode: str = "update") -> dict:
        """Install a solution zip at once (admin route; same rules and history as an import, not counted)."""
        import base64

        return self.server.admin(
            "POST", f"/orgs/{self.name}/install", {"file": base64.b64encode(package).decode("ascii"), "mode": mode}
        )

    def set_faults(self, **faults: Any) -> dict:
        return self.server.set_faults(self.name, **faults)

    def clear_faults(self) -> dict:
        return self.server.clear_faults(self.name)

    def settings(self, **values: Any) -> dict:
        return self.server.admin("POST", f"/orgs/{self.name}/settings", values)

    def counters(self) -> dict:
        return self.server.counters(self.name)

    def import_count(self, solution: str, version: str | None = None) -> int:
        return self.server.import_count(self.name, solution, version)

    def complete_operation(self, asyncoperation_id: str) -> dict:
        return self.server.admin("POST", f"/orgs/{self.name}/operations/{asyncoperation_id}/complete")

    def wait_for_operation(self, asyncoperation_id: str, timeout: float = 15.0, interval: float = 0.1) -> dict:
        """Poll ``asyncoperations(<id>)`` until statecode is 3 (docs/dataverse.md §7.2) and return the row."""
        deadline = time.monotonic() + timeout
        while True:
            row = self.get(f"asyncoperations({asyncoperation_id})").json()
            if row.get("statecode") == 3 or time.monotonic() > deadline:
                return row
            time.sleep(interval)


def _read_ready_line(process: subprocess.Popen, timeout: float) -> str:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buffer = b""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        for _key, _events in selector.select(timeout=0.2):
            chunk = os.read(process.stdout.fileno(), 4096)
            buffer += chunk
            for line in buffer.decode("utf-8", "replace").splitlines():
                if line.startswith(READY_PREFIX):
                    return line
    raise RuntimeError(f"emulator did not become ready (exit={process.poll()}, output={buffer!r})")


@contextlib.contextmanager
def start_emulator(state_dir: Path, *args: str, timeout: float = 60.0) -> Iterator[EmulatorServer]:
    """Run ``python -m dataverse_emulator --port 0 --state <state_dir>/state.json *args`` until the block ends."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file = state_dir / "state.json"
    log_file = state_dir / "emulator.log"
    command = [
        sys.executable,
        "-m",
        "dataverse_emulator",
        "--port",
        "0",
        "--state",
        str(state_file),
        "--operation-duration",
        str(TEST_OPERATION_DURATION),
        *args,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=log, start_new_session=True
        )
    try:
        line = _read_ready_line(process, timeout)
        url_part, _, ca_part = line[len(READY_PREFIX) :].partition(" ca=")
        server = EmulatorServer(process, url_part.strip(), Path(ca_part.strip()), state_file, log_file)
        yield server
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """One emulator process for the test session (see the module docstring)."""
    with start_emulator(tmp_path_factory.mktemp("dataverse-emulator")) as server:
        yield server


@pytest.fixture
def emulator_org(emulator: EmulatorServer) -> EmulatorOrg:
    """A fresh org with its own client credential, for one test."""
    return emulator.new_org()


__all__ = ["EmulatorOrg", "EmulatorServer", "emulator", "emulator_org", "start_emulator"]
