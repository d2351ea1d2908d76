"""The demo's environments, pipelines and promotion history (docs/demo.md), laid out through the
services against a running emulator. Idempotent: what exists is left as it is."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from django.utils import timezone

from alm_portal.accounts.models import Team, User
from alm_portal.audit.context import AuditContext
from alm_portal.dataverse.package import read_solution_zip
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run_now
from deployments import workflow
from deployments.demo_source import bind_to_demo_repository
from deployments.models import Pipeline, Promotion, Stage
from deployments.services import pipeline_create, settings_current_etag, settings_update, stage_add
from environments.models import Environment
from environments.services.registry import environment_create, environment_update
from solutions.models import Solution, SolutionVersion
from solutions.selectors import version_find
from solutions.services.export import solution_export_request
from solutions.services.registry import solution_register
from solutions.services.uploads import solution_version_upload

_KIND_BY_SUFFIX = {"-dev": "development", "-test": "test", "-prod": "production"}


def _kind(org: str) -> str:
    return next((kind for suffix, kind in _KIND_BY_SUFFIX.items() if org.endswith(suffix)), "other")


def seed_demo_environments(emulator: dict[str, Any]) -> list[Environment]:
    """Register every emulator org as an environment of the team its name starts with; an environment
    registered by an earlier demo gets the org's URL and authority of this run (each org lives at the root
    of its own origin on a port the emulator picked; a demo laid out under paths moves there)."""
    context = AuditContext.system()
    registered = []
    for org, details in sorted(emulator["orgs"].items()):
        environment = Environment.objects.filter(name=org).first()
        if environment is not None and (environment.url, environment.authority) != (
            details["url"],
            emulator["authority"],
        ):
            environment = environment_update(
                environment=environment, url=details["url"], authority=emulator["authority"], context=context
            )
        if environment is None:
            team = Team.objects.get(slug=org.split("-")[0])
            environment = environment_create(
                name=org,
                url=details["url"],
                kind=_kind(org),
                tenant_id=emulator["tenant_id"],
                authority=emulator["authority"],
                team=team,
                client_id=details["client_id"],
                credential_type="secret",
                client_secret=details["client_secret"],
                description=f"Emulated Dataverse organisation {org}.",
                context=context,
            )
        registered.append(environment)
    return registered


def seed_demo_pipelines() -> list[Pipeline]:
    """Contoso: contoso-dev → test (1 approval) → prod (2 approvals); Fabrikam: its dev environment."""
    context = AuditContext.system()
    approvers = list(User.objects.filter(username__in=["approver", "approver2"]))
    pipelines = []
    contoso = Pipeline.objects.filter(name="Contoso").first()
    if contoso is None:
        contoso = pipeline_create(
            name="Contoso",
            team=Team.objects.get(slug="contoso"),
            development_environment=Environment.objects.get(name="contoso-dev"),
            context=context,
        )
        for stage_name, org, approvals in (("test", "contoso-test", 1), ("prod", "contoso-prod", 2)):
            stage_add(
                pipeline=contoso,
                name=stage_name,
                target_environment=Environment.objects.get(name=org),
                required_approvals=approvals,
                approver_users=approvers,
                context=context,
            )
    pipelines.append(contoso)
    fabrikam = Pipeline.objects.filter(name="Fabrikam").first()
    if fabrikam is None:
        fabrikam = pipeline_create(
            name="Fabrikam",
            team=Team.objects.get(slug="fabrikam"),
            development_environment=Environment.objects.get(name="fabrikam-dev"),
            context=context,
        )
    pipelines.append(fabrikam)
    return pipelines


# --- history (docs/demo.md §5) -------------------------------------------------------------------------

# Corpus packages the demo uploads (deployments/demo_packages/ATTRIBUTION.md says where they come from).
DEMO_PACKAGES = Path(__file__).resolve().parent / "demo_packages"
# IncidentReporting 1.0.0.2 as published, managed and unmanaged: what test and prod run first, so the
# exported 1.0.0.5 (the 1.0.0.4 content of contoso-dev) really differs from what they had.
INCIDENT_FIRST = ("IncidentReporting_1_0_0_1_managed.zip", "IncidentReporting_1_0_0_2.zip")
INCIDENT_FIRST_NOTES = (
    "IncidentReporting 1.0.0.2 as published in pnp/powerplatform-samples (corpus zips, unchanged): the "
    "release before the one contoso-dev holds."
)
# A version derived for the demo: the published 1.0.0.5 without its custom table, so pre-flight has a
# table with rows to warn about. 1.0.1.0 stays clear of the revisions contoso-dev's exports bump.
DERIVED_SOURCE = "IncidentReporting_1_0_0_5_managed.zip"
DERIVED_TABLE = "csa_csIncident"
DERIVED_VERSION = "1.0.1.0"
DERIVED_NOTES = (
    "DERIVED FOR THE DEMO, not a release: IncidentReporting 1.0.0.5 from the pnp/powerplatform-samples "
    f"corpus with its custom table {DERIVED_TABLE} removed (and the relationships naming it), version set "
    f"to {DERIVED_VERSION}. It shows what an upgrade that drops a table with data deletes: approve it only "
    "to see the data go."
)

# Solutions of contoso-dev the history uses, in the order they are registered and exported.
DEMO_SOLUTIONS = (
    "IncidentReporting",
    "PodcastCopilotSolution",
    "UpdateCreatedBy",
    "flowexcelgroupbyemailnotificationexample",
)


@dataclass(frozen=True)
class DemoStory:
    """One line of the seeded history, for seed_demo's output."""

    solution: str
    version: str
    stage: str
    status: str
    note: str


def _person(username: str) -> User:
    return User.objects.get(username=username)


def _as(user: User) -> AuditContext:
    return AuditContext.for_user(user, auth_method="session", request_id="seed-demo")


def _demo_settings_document(versions: list[SolutionVersion]) -> dict[str, Any]:
    """A value for every connection reference and environment variable the exported packages declare
    (their default where they have one), so pre-flight finds the settings complete; the emulator
    accepts any connection id."""
    references: dict[str, dict[str, str]] = {}
    variables: dict[str, dict[str, str]] = {}
    for version in versions:
        manifest = version.managed_manifest or {}
        for reference in manifest.get("connection_references") or []:
            name = str(reference.get("logical_name") or "")
            if name:
                references[name.lower()] = {
                    "LogicalName": name,
                    "ConnectionId": f"demo-{name.lower()}",
                    "ConnectorId": str(reference.get("connector_id") or "/providers/Microsoft.PowerApps/apis/demo"),
                }
        for variable in manifest.get("environment_variables") or []:
            name = str(variable.get("schema_name") or "")
            if name:
                default = variable.get("default_value")
                value = str(default) if default not in (None, "") else f"demo value for {name}"
                variables[name.lower()] = {"SchemaName": name, "Value": value}
    return {
        "EnvironmentVariables": [variables[key] for key in sorted(variables)],
        "ConnectionReferences": [references[key] for key in sorted(references)],
    }


def derived_package(source: bytes, *, table: str, version: str) -> bytes:
    """A copy of a solution zip without one table: its <Entity>, the relationships that name it and its
    root component go, and solution.xml says `version`. Checked by reading it back. Demo only: a real
    release is exported or uploaded, never edited."""
    with zipfile.ZipFile(io.BytesIO(source)) as archive:
        files = {info.filename: archive.read(info) for info in archive.infolist()}
    customizations = files["customizations.xml"].decode("utf-8")
    # Element names are case-sensitive (an <Entity> holds an <entity>); the table's name is not.
    name = "(?i:" + re.escape(table) + ")"
    entity = re.compile(r"<Entity>\s*<Name [^>]*>" + name + r"</Name>.*?</Entity>", re.S)
    customizations, removed = entity.subn("", customizations)
    if removed != 1:
        raise ValueError(f"the package has no table {table!r} to remove")
    relationship = re.compile(
        r"<EntityRelationship Name=\"[^\"]*\">(?:(?!</EntityRelationship>).)*?"
        r"<Referenc(?:ing|ed)EntityName>" + name + r"</Referenc(?:ing|ed)EntityName>"
        r".*?</EntityRelationship>",
        re.S,
    )
    customizations = relationship.sub("", customizations)
    solution = files["solution.xml"].decode("utf-8")
    solution = re.sub(r'<RootComponent type="1" schemaName="' + name + r'"[^>]*/>\s*', "", solution)
    solution = re.sub(r"<Version>[^<]+</Version>", f"<Version>{version}</Version>", solution, count=1)
    files["customizations.xml"] = customizations.encode("utf-8")
    files["solution.xml"] = solution.encode("utf-8")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for filename, data in files.items():
            target.writestr(filename, data)
    manifest = read_solution_zip(io.BytesIO(out.getvalue()))
    tables = {component.name.lower() for component in manifest.components() if component.kind.value == "table"}
    if table.lower() in tables or manifest.version.canonical != version:
        raise ValueError(f"deriving {table!r} out of the package did not work")
    return out.getvalue()


def _upload(solution: Solution, maker: User, data: bytes, name: str, notes: str) -> SolutionVersion:
    file = io.BytesIO(data)
    file.name = name
    outcome = solution_version_upload(file=file, user=maker, context=_as(maker), release_notes=notes, solution=solution)
    return outcome.version


def _upload_first_incident(solution: Solution, maker: User) -> SolutionVersion:
    """IncidentReporting 1.0.0.2, both flavours, from the corpus."""
    version = None
    for zip_name in INCIDENT_FIRST:
        version = _upload(solution, maker, (DEMO_PACKAGES / zip_name).read_bytes(), zip_name, INCIDENT_FIRST_NOTES)
    assert version is not None
    return version


def seed_demo_derived_version() -> DemoStory | None:
    """The derived IncidentReporting version, requested into test and left waiting for approval with its
    pre-flight done: the promotion page and the approvals inbox show the data-loss warning with the
    table's row counts. Idempotent: nothing happens once the version exists (or before the history)."""
    solution = Solution.objects.filter(unique_name__iexact="IncidentReporting").first()
    pipeline = Pipeline.objects.filter(name="Contoso").first()
    if solution is None or pipeline is None or version_find(solution=solution, version=DERIVED_VERSION):
        return None
    maker = _person("maker")
    data = derived_package((DEMO_PACKAGES / DERIVED_SOURCE).read_bytes(), table=DERIVED_TABLE, version=DERIVED_VERSION)
    derived = _upload(
        solution, maker, data, f"IncidentReporting_{DERIVED_VERSION.replace('.', '_')}_derived.zip", DERIVED_NOTES
    )
    waiting = _requested(
        derived,
        pipeline.stages.get(name="test"),
        maker,
        comment=f"Demo: what would an upgrade to the derived {DERIVED_VERSION} (without {DERIVED_TABLE}) delete?",
    )
    return DemoStory(
        "IncidentReporting", derived.version, "test", waiting.status, f"derived; pre-flight {waiting.preflight_status}"
    )


def _export(solution: Solution, maker: User) -> SolutionVersion:
    """Export a managed version from contoso-dev through the export job, run here and now."""
    job = job_run_now(solution_export_request(solution=solution, bump="revision", user=maker, context=_as(maker)))
    if job.status != JobStatus.SUCCEEDED:
        raise RuntimeError(f"demo export of {solution} failed: {job.error_code} {job.error_message}")
    return SolutionVersion.objects.get(pk=job.result["version_id"])


def _run(job_id: int | None) -> None:
    """Carry out a job inline; a worker started by `make run` may take it first, which is just as good."""
    if job_id is not None:
        job_run_now(Job.objects.get(pk=job_id))


def _requested(version: SolutionVersion, stage: Stage, maker: User, **kwargs: Any) -> Promotion:
    promotion = workflow.promotion_request(
        version=version, stage=stage, requested_by=maker, context=_as(maker), **kwargs
    )
    _run(promotion.preflight_job_id)
    promotion.refresh_from_db()
    return promotion


def _approved(promotion: Promotion, *people: User) -> Promotion:
    for person in people:
        workflow.promotion_approve(promotion=promotion, user=person, context=_as(person), comment="Reviewed the diff.")
    promotion.refresh_from_db()
    return promotion


def _ran(promotion: Promotion) -> Promotion:
    promotion.refresh_from_db()
    _run(promotion.run_job_id)
    promotion.refresh_from_db()
    return promotion


def _arm_missing_dependency_failure(emulator: dict[str, Any], org: str, unique_name: str) -> None:
    """Make the emulator fail the next import into `org` as Dataverse does when a dependency went missing
    after pre-flight (someone uninstalled it by hand). Demo only: the emulator's admin API, over HTTPS."""
    response = requests.post(
        f"{emulator['base_url']}/_emulator/orgs/{org}/faults",
        json={
            "import_failure": {
                "code": "0x8004801D",
                "message": f"The following solution cannot be imported: {unique_name}. Some dependencies are missing.",
                "count": 1,
            }
        },
        verify=emulator.get("ca_file") or True,
        timeout=10,
    )
    response.raise_for_status()


def seed_demo_history(emulator: dict[str, Any]) -> list[DemoStory]:
    """Lay out the demo's history (docs/demo.md §5) through the services and the workflow against the emulator:
    versions that succeeded to test and prod, one waiting for its second approval, one rejected, one failed
    on a missing dependency, one scheduled; nothing left running. Skipped when the pipeline already has
    promotions (idempotent)."""
    pipeline = Pipeline.objects.get(name="Contoso")
    if Promotion.objects.filter(stage__pipeline=pipeline).exists():
        return []
    maker, approver, approver2 = _person("maker"), _person("approver"), _person("approver2")
    test, prod = pipeline.stages.get(name="test"), pipeline.stages.get(name="prod")
    solutions = {}
    for unique_name in DEMO_SOLUTIONS:
        solutions[unique_name] = Solution.objects.filter(unique_name__iexact=unique_name).first() or solution_register(
            unique_name=unique_name,
            team=pipeline.team,
            home_environment=pipeline.development_environment,
            user=maker,
            context=_as(maker),
        )
    # Bound before the first version arrives, so every version of the history is committed to the repository.
    bind_to_demo_repository(list(solutions.values()), maker)
    incident_0 = _upload_first_incident(solutions["IncidentReporting"], maker)
    incident_1 = _export(solutions["IncidentReporting"], maker)
    podcast = _export(solutions["PodcastCopilotSolution"], maker)
    created_by = _export(solutions["UpdateCreatedBy"], maker)
    flow = _export(solutions["flowexcelgroupbyemailnotificationexample"], maker)
    incident_2 = _export(solutions["IncidentReporting"], maker)
    document = _demo_settings_document([incident_0, incident_1, incident_2, podcast, created_by, flow])
    for stage in (test, prod):
        settings_update(
            stage=stage,
            document=document,
            if_match=settings_current_etag(stage=stage),
            context=_as(_person("admin")),
            user=_person("admin"),
        )

    stories = []
    # The published 1.0.0.2 first, in test and prod, so the next release has a real diff against them.
    for stage, people in ((test, (approver,)), (prod, (approver, approver2))):
        done = _ran(_approved(_requested(incident_0, stage, maker), *people))
        stories.append(DemoStory("IncidentReporting", incident_0.version, stage.name, done.status, "from the corpus"))
    # Succeeded to test, then to prod with two approvals.
    done = _ran(_approved(_requested(incident_1, test, maker), approver))
    stories.append(DemoStory("IncidentReporting", incident_1.version, "test", done.status, "approved by approver"))
    done = _ran(_approved(_requested(incident_1, prod, maker), approver, approver2))
    stories.append(DemoStory("IncidentReporting", incident_1.version, "prod", done.status, "approved by both"))
    # In test, and waiting for its second approval in prod.
    _ran(_approved(_requested(podcast, test, maker), approver2))
    waiting = _approved(_requested(podcast, prod, maker), approver)
    stories.append(DemoStory("PodcastCopilotSolution", podcast.version, "prod", waiting.status, "1 of 2 approvals"))
    # Rejected in test.
    rejected = _requested(incident_2, test, maker)
    workflow.promotion_reject(
        promotion=rejected,
        user=approver2,
        comment="The incident form lost its location field; please fix and export again.",
        context=_as(approver2),
    )
    rejected.refresh_from_db()
    stories.append(DemoStory("IncidentReporting", incident_2.version, "test", rejected.status, "by approver2"))
    # Failed in test: a dependency went missing between pre-flight and the import.
    failing = _approved(_requested(created_by, test, maker), approver)
    _arm_missing_dependency_failure(emulator, test.target_environment.name, created_by.solution.unique_name)
    failed = _ran(failing)
    stories.append(DemoStory("UpdateCreatedBy", created_by.version, "test", failed.status, failed.error_code))
    # Scheduled for next Saturday 02:00 UTC, approved, waiting for its time.
    now = timezone.now()
    saturday = (now + timedelta(days=(5 - now.weekday()) % 7 or 7)).replace(hour=2, minute=0, second=0, microsecond=0)
    scheduled = _approved(_requested(flow, test, maker, scheduled_for=saturday), approver)
    stories.append(
        DemoStory(flow.solution.unique_name, flow.version, "test", scheduled.status, f"{saturday:%a %d %b %H:%M} UTC")
    )
    return stories
