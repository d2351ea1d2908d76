"""Shared set-up of the browser tests (issue 7, "Must show").

Debian's Chromium driven by Playwright's Python package, against pytest-django's live server on
PostgreSQL, with a real Celery worker over Redis running every job, the session's emulator as the
Dataverse orgs and a second emulator (`--seed demo`) as Entra ID with its demo identities.

Expensive parts are shared per module: the browser, the worker and the Entra ID emulator. Each test
still gets fresh rows (transactional database), fresh browser contexts (cookies) and its own orgs.

When a test fails, every page it opened is saved as a screenshot under var/e2e-screenshots/ (of
ALM_VAR_DIR when set) and the paths are printed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from alm_portal.audit.checkpoints import CHECKPOINT_DIR
from alm_portal.jobs.models import Job
from deployments.models import Promotion
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    Contoso,
    contoso_fixture,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
)
from tests.support.emulator import start_emulator
from tests.support.worker import WorkerProcess, purge_queue, start_worker

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "correct-horse-battery"  # tests/conftest.py make_user
PROMOTION_ENDED = ("succeeded", "failed")
JOB_ENDED = ("succeeded", "failed", "needs_attention", "cancelled")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test item, so fixtures can tell at teardown that the test failed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


def _failed(node: pytest.Item) -> bool:
    return any(getattr(getattr(node, f"report_{when}", None), "failed", False) for when in ("setup", "call"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    # Playwright's sync API runs an event loop in this thread, and the tests' own ORM calls are synchronous.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                yield chromium
            finally:
                chromium.close()


@pytest.fixture
def new_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Callable[[], Any]]:
    """new_page() → a page in a fresh browser context (its own cookies: one person each). On failure,
    every page opened is saved as a screenshot and its path printed."""
    opened: list[Any] = []

    def open_page() -> Any:
        # The emulator's certificate is its own CA's; tests/emulator checks that chain properly.
        context = browser.new_context(ignore_https_errors=True, accept_downloads=True)
        context.set_default_timeout(15_000)
        page = context.new_page()
        opened.append(page)
        return page

    yield open_page
    if _failed(request.node):
        screenshots = Path(django_settings.VAR_DIR) / "e2e-screenshots"
        screenshots.mkdir(parents=True, exist_ok=True)
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        for index, page in enumerate(opened):
            path = screenshots / f"{request.node.name}-{index}.png"
            try:
                page.screenshot(path=str(path), full_page=True)
                line = f"screenshot of page {index} ({page.url}): {path}"
            except Exception as exc:  # a crashed page must not hide the test's own failure
                line = f"no screenshot of page {index}: {exc}"
            if reporter is not None:
                reporter.write_line(line)
            else:
                print(line)
    for page in opened:
        page.context.close()


@pytest.fixture(scope="module")
def module_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-artifacts")


@pytest.fixture(autouse=True)
def artifact_storage(settings: Any, module_artifacts: Path) -> Path:
    """Instead of tests/conftest.py's per-test folder: the module's one worker must read the zips the
    tests store, so both use one folder for the module. Audit checkpoints are the exception: each test starts
    with an empty audit log, so an earlier test's checkpoints (rows that no longer exist) would make this
    test's chain verify as broken."""
    shutil.rmtree(module_artifacts / CHECKPOINT_DIR, ignore_errors=True)
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(module_artifacts)},
        },
    }
    settings.ALM_ARTIFACT_DIR = module_artifacts
    return module_artifacts


@pytest.fixture(scope="module")
def worker(
    django_db_setup: Any, emulator: Any, module_artifacts: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One real Celery worker for the module, against the test database, the session's emulator and
    the module's artifact folder, polling imports every second."""
    purge_queue()
    log = tmp_path_factory.mktemp("e2e-worker") / "worker.log"
    env = {
        "ALM_ARTIFACT_DIR": str(module_artifacts),
        "ALM_DATAVERSE_CA_BUNDLE": str(emulator.ca_file),
        "ALM_IMPORT_POLL_SECONDS": "1",
        "ALM_IMPORT_POLL_MAX_SECONDS": "1",
        "ALM_IMPORT_BUSY_RETRY_SECONDS": "1",
    }
    process = start_worker(log, env, 1, "e2e@%h")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def entra_server(live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The emulator's demo tenant as our Entra ID, its sign-in client redirecting to this live server."""
    state = tmp_path_factory.mktemp("entra")
    callback = f"{live_server.url}/accounts/sso/callback/"
    with start_emulator(state, "--seed", "demo", "--sso-redirect-uri", callback) as server:
        yield server, json.loads((state / "demo-credentials.json").read_text())


@pytest.fixture
def entra(entra_server: tuple[Any, dict[str, Any]], runner_settings: Any, tmp_path: Path) -> Any:
    server, credentials = entra_server
    settings = runner_settings
    settings.ALM_SSO_AUTHORITY = credentials["authority"]
    settings.ALM_SSO_CLIENT_ID = credentials["sso_client"]["client_id"]
    settings.ALM_SSO_CLIENT_SECRET = credentials["sso_client"]["client_secret"]
    # As in the demo: the demo identities sign in as the local people of the same name, in its own domain.
    settings.ALM_SSO_DEMO_LINKING = {"tenant_id": credentials["tenant_id"], "domain": credentials["tenant_name"]}
    # One bundle trusting both emulators: this one (Entra ID) and the session's (the Dataverse orgs).
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_text(Path(settings.ALM_DATAVERSE_CA_BUNDLE).read_text() + server.ca_file.read_text())
    settings.ALM_DATAVERSE_CA_BUNDLE = str(bundle)
    return server


# --- what the tests do in the browser ----------------------------------------------------------------


def sign_in_with_password(page: Any, live_server: Any, username: str) -> Any:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("#password-sign-in")
    page.wait_for_url(f"{live_server.url}/")
    return page


def sign_in_with_entra(page: Any, live_server: Any, who: str) -> Any:
    """Through the authorization-code flow: our button, the emulator's sign-in page, back to the portal."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.click("#sso-button")
    page.click(f'[data-testid="signin-{who}"]')
    page.wait_for_url(f"{live_server.url}/")
    return page


def promotion_url(live_server: Any, promotion: Promotion) -> str:
    return live_server.url + reverse("deployments:promotion-detail", args=[promotion.pk])


# --- waiting for the worker ------------------------------------------------------------------------------


def preflight_done(worker: WorkerProcess, promotion: Promotion) -> Promotion:
    worker.wait_for(
        lambda: Promotion.objects.filter(pk=promotion.pk).exclude(preflight_status="pending").exists(), timeout=60
    )
    promotion.refresh_from_db()
    return promotion


def run_finished(worker: WorkerProcess, promotion: Promotion) -> Promotion:
    """The promotion's outcome commits first and the job's own finish a moment later: wait for both."""
    worker.wait_for(lambda: Promotion.objects.get(pk=promotion.pk).status in PROMOTION_ENDED, timeout=90)
    promotion.refresh_from_db()
    worker.wait_for(lambda: Job.objects.get(pk=promotion.run_job_id).status in JOB_ENDED, timeout=60)
    return promotion


def promoted_by_the_worker(contoso: Contoso, worker: WorkerProcess, version: Any, stage: str) -> Promotion:
    """Request, pre-flight, approve and run one promotion through the services and the worker."""
    promotion = preflight_done(worker, contoso.request(version, stage))
    contoso.approve(promotion)
    promotion = run_finished(worker, promotion)
    assert promotion.status == "succeeded", promotion.error_message
    return promotion
