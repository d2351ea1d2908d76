"""Log records are one line each, JSON in production, and carry the request id and the job id."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from alm_portal.audit.context import AuditContext
from alm_portal.job_kinds import JobKind
from alm_portal.jobs import registry as job_registry
from alm_portal.jobs.services import job_enqueue, job_run_now
from alm_portal.logformat import JobIdLogFilter, JsonLogFormatter, TextLogFormatter
from alm_portal.middleware import RequestIdLogFilter, RequestIdMiddleware
from tests.project.test_configuration import PRODUCTION_OK

ROOT = Path(__file__).resolve().parents[2]
FORGED = "comment\r\n2026-01-01T00:00:00.000Z ERROR alm_portal [forged] admin password reset\nend"


def _capture(formatter: logging.Formatter) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdLogFilter())
    handler.addFilter(JobIdLogFilter())
    logger = logging.getLogger("alm_portal.test_logging")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    yield from _capture(JsonLogFormatter())


@pytest.fixture
def text_log() -> Iterator[io.StringIO]:
    yield from _capture(TextLogFormatter())


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_a_record_inside_a_request_is_one_json_line_with_the_request_id(json_log):
    def view(request):
        logging.getLogger("alm_portal.test_logging").warning("renamed to %s", FORGED)
        return HttpResponse("ok")

    response = RequestIdMiddleware(view)(RequestFactory().get("/"))

    (line,) = _lines(json_log)
    entry = json.loads(line)
    assert entry["request_id"] == response["X-Request-ID"] and entry["job_id"] is None
    assert entry["message"] == f"renamed to {FORGED}" and entry["level"] == "WARNING"
    assert entry["time"].endswith("Z")


@pytest.mark.django_db
def test_a_record_inside_a_job_carries_the_job_id_and_the_request_that_queued_it(json_log, monkeypatch):
    def handler(job, context):
        logging.getLogger("alm_portal.test_logging").info("cleaning up %s", FORGED)
        try:
            raise RuntimeError("boom\nFAKE LINE")
        except RuntimeError:
            logging.getLogger("alm_portal.test_logging").exception("handled")
        return {}

    import deployments.tasks  # noqa: F401 - registers the real handlers first, so the stand-in below is not overwritten

    monkeypatch.setitem(job_registry._HANDLERS, JobKind.HOLDING_CLEANUP, handler)
    job = job_enqueue(
        kind=JobKind.HOLDING_CLEANUP,
        environment=None,
        params={},
        context=AuditContext.system(request_id="req-0123456789"),
    )
    finished = job_run_now(job)
    assert finished.status == "succeeded", (finished.error_code, finished.error_message)
    logging.getLogger("alm_portal.test_logging").info("after the job")

    first, second, after = (json.loads(line) for line in _lines(json_log))
    assert (first["job_id"], first["request_id"]) == (str(job.pk), "req-0123456789")
    assert first["message"] == f"cleaning up {FORGED}"
    assert second["job_id"] == str(job.pk) and "FAKE LINE" in second["exception"]
    assert after["job_id"] is None and after["request_id"] is None  # bound only while the job ran


def test_text_lines_escape_cr_and_lf_and_indent_tracebacks(text_log):
    logger = logging.getLogger("alm_portal.test_logging")
    logger.warning("name is %s", FORGED)
    try:
        raise ValueError("bad\nERROR forged")
    except ValueError:
        logger.exception("failed")
    lines = _lines(text_log)
    assert len([line for line in lines if not line.startswith("    | ")]) == 2
    assert "\\r\\n2026-01-01T00:00:00.000Z ERROR" in lines[0]
    assert all(line.startswith("    | ") for line in lines[2:])


def test_production_logs_json_by_default_and_the_setting_chooses(tmp_path):
    script = "import django, logging; django.setup(); logging.getLogger('probe').warning('hello\\nworld')"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ALM_", "DATABASE_URL", "SECRET"))}
    env.update({"ALM_VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "alm_portal.settings"})

    def run(overrides: dict[str, str]) -> str:
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**env, **overrides},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stderr

    (line,) = run(PRODUCTION_OK).splitlines()
    assert json.loads(line)["message"] == "hello\nworld"
    (line,) = run({**PRODUCTION_OK, "ALM_LOG_FORMAT": "text"}).splitlines()
    assert line.endswith("WARNING probe [-] hello\\nworld")
    bad = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**env, "ALM_LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "ALM_LOG_FORMAT" in bad.stderr


@pytest.mark.django_db
def test_a_worker_task_after_a_job_no_longer_logs_under_that_jobs_request_id(json_log, monkeypatch):
    """A worker process runs many tasks: the beat task that follows a job must not carry the job's request id."""
    import alm_portal.jobs.tasks

    monkeypatch.setitem(job_registry._HANDLERS, JobKind.HOLDING_CLEANUP, lambda job, context: {})
    job = job_enqueue(
        kind=JobKind.HOLDING_CLEANUP, environment=None, params={}, context=AuditContext.system(request_id="seed-demo")
    )

    alm_portal.jobs.tasks.run_job(job.pk)
    logging.getLogger("alm_portal.test_logging").info("the next task")

    (after,) = (json.loads(line) for line in _lines(json_log))
    assert after["request_id"] is None
