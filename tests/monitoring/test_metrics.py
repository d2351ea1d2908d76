"""GET /metrics: who may read it, what it says, and that it costs the same few queries at any size."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from alm_portal.job_kinds import JobKind
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from alm_portal.monitoring.exposition import render
from alm_portal.monitoring.selectors import MetricFamily
from environments.choices import DriftKind
from environments.models import DriftFinding, Environment

pytestmark = pytest.mark.django_db
METRICS_TOKEN = "m" * 40
_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The exposition parsed back: (name, labels) → value; every line must be a comment or a sample."""
    parsed = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        parsed[(match["name"], labels)] = float(match["value"])
    return parsed


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed[(name, frozenset(labels.items()))]


@pytest.fixture
def scraper_token(settings: Any) -> str:
    settings.ALM_METRICS_TOKEN = METRICS_TOKEN
    return METRICS_TOKEN


@pytest.mark.parametrize(
    ("persona", "expected"),
    [
        ("anonymous", 401),
        ("maker", 403),
        ("maker2", 403),
        ("approver", 403),
        ("admin", 200),
        ("auditor", 200),
        ("readonly", 200),
    ],
)
def test_only_admins_auditors_and_the_scraper_read_metrics(api_world, scraper_token, persona, expected):
    response = api_world.client(persona).get("/metrics")
    assert response.status_code == expected
    if expected == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")
    if expected == 200:
        assert response["Content-Type"].startswith("text/plain; version=0.0.4")


def test_the_scraper_token_is_compared_whole_and_sessions_follow_roles(api_world, scraper_token, token_for):
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {scraper_token}").status_code == 200
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {scraper_token[:-1]}").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Basic {scraper_token}").status_code == 401
    admin_without_read = token_for(api_world.users["admin"], scopes=["approve"])
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {admin_without_read}").status_code == 403
    for persona, expected in (("auditor", 200), ("admin", 200), ("maker", 403), ("approver", 403)):
        browser = Client()
        browser.force_login(api_world.users[persona])
        assert browser.get("/metrics").status_code == expected, persona
    assert Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {scraper_token}").status_code == 405


def test_without_a_configured_token_no_static_bearer_is_accepted(api_world, settings):
    settings.ALM_METRICS_TOKEN = None
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer " + "m" * 40).status_code == 401


def _world_state(api_world: Any) -> Environment:
    environment = Environment.objects.get(pk=api_world.ids["environment"])
    Environment.objects.filter(pk=environment.pk).update(throttled_responses=7)
    now = timezone.now()
    DriftFinding.objects.create(
        environment=environment, kind=DriftKind.MISSING, unique_name="Core", first_seen_at=now, last_seen_at=now
    )
    DriftFinding.objects.create(
        environment=environment,
        kind=DriftKind.UNREGISTERED,
        unique_name="Old",
        first_seen_at=now,
        last_seen_at=now,
        resolved_at=now,
    )
    Job.objects.create(kind=JobKind.IMPORT, status=JobStatus.NEEDS_ATTENTION, environment=environment)
    return environment


def test_metrics_report_jobs_attention_throttling_drift_and_the_audit_chain(api_world, scraper_token):
    from alm_portal.audit_verification.services import audit_verification_request
    from alm_portal.jobs.services import job_run_now

    environment = _world_state(api_world)
    verification = job_run_now(audit_verification_request(context=AuditContext.system()))

    text = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {scraper_token}").content.decode()
    parsed = samples(text)

    assert value(parsed, "alm_jobs_needs_attention") == 1
    assert value(parsed, "alm_jobs", kind="import", status="needs_attention") == 1
    assert value(parsed, "alm_jobs", kind="audit_verify", status="succeeded") == 1
    waiting = Job.objects.filter(kind=JobKind.HEALTH_CHECK, status=JobStatus.PENDING).count()
    assert value(parsed, "alm_jobs", kind="health_check", status="pending") == waiting
    assert value(parsed, "alm_jobs", kind="uninstall", status="polling") == 0  # every pair, zeros included
    assert value(parsed, "alm_dataverse_throttled_responses_total", environment=environment.name) == 7
    assert value(parsed, "alm_drift_findings_open", environment=environment.name) == 1
    assert value(parsed, "alm_audit_last_verification_valid") == 1
    assert value(parsed, "alm_audit_last_verification_head_seq") == verification.result["head_seq"]
    assert abs(value(parsed, "alm_audit_last_verification_timestamp_seconds") - timezone.now().timestamp()) < 3600
    assert value(parsed, "alm_audit_head_seq") > verification.result["head_seq"]  # the verification's own event
    assert "# TYPE alm_dataverse_throttled_responses_total counter" in text
    assert ("alm_broker_up", frozenset()) in parsed


def test_a_never_verified_chain_reports_time_zero_and_no_validity(api_world, scraper_token):
    parsed = samples(Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {scraper_token}").content.decode())
    assert value(parsed, "alm_audit_last_verification_timestamp_seconds") == 0
    assert not any(name == "alm_audit_last_verification_valid" for name, _ in parsed)


def test_the_query_count_does_not_grow_with_environments_jobs_or_findings(api_world, scraper_token, team):
    scrape = Client()

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert scrape.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {scraper_token}").status_code == 200
        return len(captured)

    small = queries()
    now = timezone.now()
    for number in range(5):
        extra = Environment.objects.create(
            name=f"extra-{number}",
            url=f"https://extra{number}.crm.dynamics.com",
            tenant_id="t",
            authority="a",
            team=team,
        )
        DriftFinding.objects.create(
            environment=extra, kind=DriftKind.MISSING, unique_name="Core", first_seen_at=now, last_seen_at=now
        )
        Job.objects.create(kind=JobKind.INVENTORY_SYNC, status=JobStatus.FAILED, environment=extra)
    assert queries() == small <= 4


def test_label_values_cannot_break_out_of_their_quotes_or_forge_a_line():
    family = MetricFamily("alm_drift_findings_open", "gauge", "Open drift findings.")
    family.add(2, environment='evil"} 1\nalm_jobs_needs_attention 0\\')
    text = render([family])
    assert text.count("\n") == 3  # HELP, TYPE and one sample
    parsed = samples(text)
    assert len(parsed) == 1
    ((name, labels),) = parsed
    assert name == "alm_drift_findings_open" and dict(labels)["environment"].startswith("evil")


@pytest.mark.redis
def test_queue_depth_is_the_length_of_the_broker_queue(api_world, scraper_token, settings):
    import redis

    broker = redis.Redis.from_url(settings.REDIS_URL)
    broker.delete("celery", "celery\x06\x163")
    try:
        broker.lpush("celery", *[b"{}"] * 3)
        broker.lpush("celery\x06\x163", b"{}")  # the same queue's priority-3 list
        parsed = samples(Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {scraper_token}").content.decode())
    finally:
        broker.delete("celery", "celery\x06\x163")
    assert value(parsed, "alm_broker_up") == 1
    assert value(parsed, "alm_broker_queue_messages", queue="celery") == 4


def test_an_unreachable_broker_is_reported_not_an_error(api_world, scraper_token, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {scraper_token}")
    assert response.status_code == 200
    parsed = samples(response.content.decode())
    assert value(parsed, "alm_broker_up") == 0
    assert value(parsed, "alm_jobs_needs_attention") == 0


def test_every_series_is_documented_in_the_readme(api_world):
    from pathlib import Path

    from alm_portal.monitoring.selectors import metric_families

    _world_state(api_world)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    operations = readme[readme.index("## Operations") :]
    for family in metric_families():
        assert f"`{family.name}" in operations, family.name
