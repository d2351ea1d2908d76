"""Shared setup of the pre-flight, runner, crash, rollback and end-to-end tests (holds no tests itself).

the demo's layout (docs/demo.md) against the emulator: three emulator orgs registered as contoso-dev, -test
and -prod; the Contoso pipeline dev → test (1 approval) → prod (2 approvals) with approver and
approver2 named on both stages; solutions uploaded by the maker through the registry service, so every
artifact is really stored and re-hashed. Everything goes through the services and the workflow; jobs
run inline (job_run_now) unless a test starts a real Celery worker.

Packages: the corpus's Success 1.0.0.0 / 1.1.0.0 (two custom tables) and copies of Success 1.1.0.0 built
here with other versions and other tables, so upgrades that add or remove a table can be shown.
"""

from __future__ import annotations

import io
import re
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from alm_portal.audit.context import AuditContext
from alm_portal.dataverse.client import clear_throttle
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run_now
from deployments import workflow
from deployments.models import Promotion
from deployments.services import pipeline_create, settings_update, stage_add

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "solutions"
WORKER = AuditContext.worker(request_id="req-runner-test")
SUCCESS = "Success"
BASE_TABLES = ("ud_testentity1", "ud_testentity2")


def corpus_bytes(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


# --- package builder -----------------------------------------------------------------------------------


_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _entity_blocks(customizations: str) -> dict[str, str]:
    blocks = {}
    for match in re.finditer(r"<Entity>.*?</Entity>", customizations, re.S):
        name = re.search(r"<Name [^>]*>([^<]+)</Name>", match.group(0))
        assert name is not None
        blocks[name.group(1).lower()] = match.group(0)
    return blocks


def _clone_entity(template: str, new: str) -> str:
    """ud_testentity2's block renamed to `new` (ud_testentity<N>: names, display names and collection names
    alike), with fresh GUIDs (forms and views need their own ids)."""
    suffix = new.removeprefix("ud_testentity")
    block = re.sub(r"(?i)(testentit(?:y|ies))2", lambda m: m.group(1) + suffix, template)
    return _GUID.sub(lambda m: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{new}:{m.group(0).lower()}")), block)


@cache
def success_package(version: str, tables: tuple[str, ...] = BASE_TABLES, unique_name: str = SUCCESS) -> bytes:
    """A managed Success package (publisher ultradynamics) with `version` and these custom tables (and
    another unique name, when given).

    Built from the corpus's Success 1.1.0.0: its two tables are kept or dropped, other names are copies of
    ud_testentity2. Relationships of dropped tables go with them.
    """
    with zipfile.ZipFile(CORPUS / "Success_1_1_0_0_managed.zip") as source:
        files = {name: source.read(name) for name in source.namelist()}
    customizations = files["customizations.xml"].decode("utf-8")
    blocks = _entity_blocks(customizations)
    chosen = []
    for table in tables:
        chosen.append(blocks[table] if table in blocks else _clone_entity(blocks["ud_testentity2"], table))
    start = customizations.index("<Entities>") + len("<Entities>")
    end = customizations.index("</Entities>")
    customizations = customizations[:start] + "\n" + "\n".join(chosen) + "\n  " + customizations[end:]
    for table in BASE_TABLES:
        if table not in tables:
            customizations = re.sub(
                r"<EntityRelationship Name=\"[^\"]*\">(?:(?!</EntityRelationship>).)*?<ReferencingEntityName>"
                + table
                + r"</ReferencingEntityName>.*?</EntityRelationship>",
                "",
                customizations,
                flags=re.S,
            )
    solution = files["solution.xml"].decode("utf-8")
    solution = re.sub(r"<Version>[^<]+</Version>", f"<Version>{version}</Version>", solution, count=1)
    solution = re.sub(r"<UniqueName>[^<]+</UniqueName>", f"<UniqueName>{unique_name}</UniqueName>", solution, count=1)
    roots = "".join(f'<RootComponent type="1" schemaName="{table}" behavior="0" />' for table in tables)
    solution = re.sub(
        r"<RootComponents>.*?</RootComponents>", f"<RootComponents>{roots}</RootComponents>", solution, flags=re.S
    )
    files["customizations.xml"] = customizations.encode("utf-8")
    files["solution.xml"] = solution.encode("utf-8")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in files.items():
            target.writestr(name, data)
    return out.getvalue()


def upload_file(data: bytes, name: str = "package.zip") -> io.BytesIO:
    stream = io.BytesIO(data)
    stream.name = name
    return stream


# --- settings and environments ------------------------------------------------------------------------


@pytest.fixture(name="runner_settings")
def runner_settings_fixture(settings: Any, emulator: Any) -> Iterator[Any]:
    """Trust the emulator's CA, allow loopback, poll quickly, hash passwords cheaply."""
    settings.ALM_DATAVERSE_CA_BUNDLE = str(emulator.ca_file)
    settings.ALM_ALLOW_LOOPBACK = True
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ALM_IMPORT_POLL_SECONDS = 0.2
    settings.ALM_IMPORT_POLL_MAX_SECONDS = 0.5
    settings.ALM_IMPORT_BUSY_RETRY_SECONDS = 0.5
    clear_throttle()
    yield settings
    clear_throttle()


def register_environment(org: Any, team: Any, *, name: str, kind: str) -> Any:
    from environments.services import environment_create

    return environment_create(
        name=name,
        url=org.url,
        kind=kind,
        tenant_id=org.tenant_id,
        authority=org.authority,
        team=team,
        client_id=org.client_id,
        credential_type="secret",
        client_secret=org.client_secret,
        context=AuditContext.system(),
        check_health=False,
    )


def as_user(user: Any) -> AuditContext:
    return AuditContext.for_user(user, auth_method="session", request_id="req-runner-test")


@dataclass
class Contoso:
    """The demo layout in small, on the emulator (see the module docstring)."""

    orgs: dict[str, Any]
    environments: dict[str, Any]
    pipeline: Any
    stages: dict[str, Any]
    maker: Any
    approvers: list[Any]
    admin: Any
    inline: bool = True
    solutions: dict[str, Any] = field(default_factory=dict)

    # -- registry --

    def upload(self, data: bytes) -> Any:
        from solutions.services import solution_version_upload

        outcome = solution_version_upload(
            file=upload_file(data),
            user=self.maker,
            context=as_user(self.maker),
            home_environment=self.environments["dev"],
        )
        return outcome.version

    def set_settings(self, stage: str, document: dict[str, Any]) -> Any:
        from deployments.services import settings_current_etag

        row = self.stages[stage]
        return settings_update(
            stage=row, document=document, if_match=settings_current_etag(stage=row), context=AuditContext.system()
        )

    # -- the workflow, with jobs run inline --

    def request(self, version: Any, stage: str, **kwargs: Any) -> Promotion:
        return workflow.promotion_request(
            version=version, stage=self.stages[stage], requested_by=self.maker, context=as_user(self.maker), **kwargs
        )

    def run_job(self, job_id: int | None) -> Job:
        assert job_id is not None
        return job_run_now(Job.objects.get(pk=job_id))

    def preflight(self, promotion: Promotion) -> Promotion:
        promotion.refresh_from_db()
        self.run_job(promotion.preflight_job_id)
        promotion.refresh_from_db()
        return promotion

    def approve(self, promotion: Promotion, approvers: Iterable[Any] | None = None) -> Promotion:
        stage = promotion.stage
        needed = max(1, stage.required_approvals)
        for person in list(approvers or self.approvers)[:needed]:
            workflow.promotion_approve(promotion=promotion, user=person, context=as_user(person))
        promotion.refresh_from_db()
        return promotion

    def run(self, promotion: Promotion) -> Promotion:
        promotion.refresh_from_db()
        self.run_job(promotion.run_job_id)
        promotion.refresh_from_db()
        return promotion

    def promote(self, version: Any, stage: str, **kwargs: Any) -> Promotion:
        """Request, pre-flight, approve and run: the whole path of one promotion."""
        promotion = self.preflight(self.request(version, stage, **kwargs))
        assert promotion.preflight_status in ("passed", "warnings"), promotion.preflight_result
        self.approve(promotion)
        return self.run(promotion)

    def rollback(self, promotion: Promotion, strategy: str, *, by: Any = None, confirm: str = "") -> Promotion:
        requester = by or self.maker
        rollback = workflow.rollback_request(
            promotion=promotion,
            strategy=strategy,
            requested_by=requester,
            context=as_user(requester),
            confirm=confirm,
        )
        rollback = self.preflight(rollback)
        assert rollback.preflight_status in ("passed", "warnings"), rollback.preflight_result
        approvers = [person for person in self.approvers if person.pk != requester.pk]
        self.approve(rollback, approvers)
        return self.run(rollback)

    # -- what the target has --

    def installed(self, stage: str, name: str = SUCCESS) -> dict[str, Any] | None:
        org = self.orgs[stage]
        rows = org.get(f"solutions?$filter=uniquename eq '{name}'&$select=uniquename,version,ismanaged").json()["value"]
        return rows[0] if rows else None

    def tables(self, stage: str) -> dict[str, Any]:
        return self.orgs[stage].server.admin("GET", f"/orgs/{self.orgs[stage].name}/tables")


@pytest.fixture(name="contoso")
def contoso_fixture(
    emulator: Any,
    runner_settings: Any,
    team: Any,
    maker: Any,
    approver: Any,
    second_approver: Any,
    admin_user: Any,
    no_broker_for_inline: Any,
) -> Contoso:
    orgs = {name: emulator.new_org() for name in ("dev", "test", "prod")}
    environments = {
        name: register_environment(org, team, name=f"contoso-{name}-{org.name}", kind=kind)
        for (name, org), kind in zip(orgs.items(), ("development", "test", "production"), strict=True)
    }
    system = AuditContext.system()
    pipeline = pipeline_create(
        name=f"Contoso {orgs['dev'].name}", team=team, development_environment=environments["dev"], context=system
    )
    stages = {}
    for name, approvals in (("test", 1), ("prod", 2)):
        stages[name] = stage_add(
            pipeline=pipeline,
            name=name,
            target_environment=environments[name],
            required_approvals=approvals,
            approver_users=[approver, second_approver],
            context=system,
        )
    return Contoso(
        orgs=orgs,
        environments=environments,
        pipeline=pipeline,
        stages=stages,
        maker=maker,
        approvers=[approver, second_approver],
        admin=admin_user,
    )


@pytest.fixture(name="no_broker_for_inline")
def no_broker_for_inline_fixture(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[Any, ...]]:
    """Jobs run inline in most tests: the after-commit nudge to a worker goes nowhere. Tests that start a
    real worker mark themselves `redis` and keep the real publish."""
    sent: list[tuple[Any, ...]] = []
    if request.node.get_closest_marker("redis"):
        return sent
    monkeypatch.setattr(
        "alm_portal.celery.publish_best_effort",
        lambda task, args=(), countdown=None: sent.append(args) or True,
    )
    return sent


def job_of(promotion: Promotion) -> Job:
    promotion.refresh_from_db()
    assert promotion.run_job_id is not None
    return Job.objects.get(pk=promotion.run_job_id)


def checks_by_code(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["code"]: check for check in result.get("checks", [])}


__all__ = [
    "BASE_TABLES",
    "CORPUS",
    "SUCCESS",
    "WORKER",
    "Contoso",
    "as_user",
    "checks_by_code",
    "contoso_fixture",
    "corpus_bytes",
    "job_of",
    "no_broker_for_inline_fixture",
    "register_environment",
    "runner_settings_fixture",
    "success_package",
]
