"""Scale seed for the load benchmarks (issue 8): a portal database the size of a large tenant.

    .venv/bin/python bench/scale_seed.py --database alm_bench_scale --recreate [--scale 1.0]
        [--audit-events N] [--pg postgres://postgres@127.0.0.1:5432]

At --scale 1.0: 1,000 environments, 20,000 solutions, 200,000 versions (metadata only: the rows name
an artifact path and SHA-256, no bytes are stored), 50,000 promotions in mixed statuses with their
approvals and run jobs, and 5,000,000 audit events. Smaller scales shrink every count alike (the
tests use a tiny one). --recreate drops and recreates the database and runs the migrations first;
without it the database must hold no environments yet.

Portal rows go in through the ORM's bulk_create (model defaults apply; no services, so no per-row
audit events). Audit events go in through COPY with a valid hash chain: every row is hashed with the
product's own canonical form (alm_portal.audit.canonical.event_hash), continuing from the current
head, under the same transaction lock that audit.record() takes, so nothing can interleave. A forked
child process formats and hashes rows into a pipe while PostgreSQL parses and stores them (two cores);
the audit table's secondary indexes are dropped for the load and rebuilt after it in the same
transaction. Finally a signed checkpoint of the new head is written, so `manage.py verify_audit`
checks the seeded chain against it.

Artifacts and checkpoints live under var/bench/<database>/ (ALM_ARTIFACT_DIR), one folder per
database, because checkpoints name seqs of one particular chain. Prints how long each part took.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432"
PASSWORD = "bench-scale-password-1"  # every seeded user; the load driver signs in with it

FULL_COUNTS = {
    "environments": 1_000,
    "solutions": 20_000,
    "versions": 200_000,
    "promotions": 50_000,
    "audit_events": 5_000_000,
}
ENVIRONMENTS_PER_PIPELINE = 5  # dev, test, prod and two spares per pipeline
PIPELINES_PER_TEAM = 20


def bench_var_dir(database: str) -> Path:
    return REPO / "var" / "bench" / database


def configure_django(*, database: str, pg: str = DEFAULT_PG) -> None:
    """Point the settings at `database` and its own artifact folder, then set Django up."""
    os.environ["DATABASE_URL"] = f"{pg}/{database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alm_portal.settings")
    os.environ.setdefault("ALM_MODE", "development")
    os.environ.setdefault("DEBUG", "false")
    os.environ["ALM_ARTIFACT_DIR"] = str(bench_var_dir(database) / "artifacts")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


def recreate_database(*, database: str, pg: str = DEFAULT_PG) -> None:
    """Drop and create `database`, and remove its checkpoints (they describe the old chain)."""
    admin = f"{pg}/postgres"
    subprocess.run(["psql", admin, "-qc", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'], check=True)
    subprocess.run(["psql", admin, "-qc", f'CREATE DATABASE "{database}"'], check=True)
    shutil.rmtree(bench_var_dir(database), ignore_errors=True)


@dataclass
class Timings:
    parts: list[tuple[str, int, float]] = field(default_factory=list)

    def timed(self, label: str, action: Callable[[], int]) -> int:
        started = time.perf_counter()
        count = action()
        elapsed = time.perf_counter() - started
        self.parts.append((label, count, elapsed))
        print(f"  {label:<34} {count:>10,} rows  {elapsed:8.1f} s", flush=True)
        return count

    def table(self) -> str:
        lines = [f"{'part':<34} {'rows':>10} {'seconds':>9} {'rows/s':>10}", "-" * 66]
        for label, count, elapsed in self.parts:
            rate = count / elapsed if elapsed > 0 else 0.0
            lines.append(f"{label:<34} {count:>10,} {elapsed:>9.1f} {rate:>10,.0f}")
        total = sum(elapsed for _, _, elapsed in self.parts)
        lines.append(f"{'total':<34} {'':>10} {total:>9.1f}")
        return "\n".join(lines)


def scaled_counts(scale: float, audit_events: int | None = None) -> dict[str, int]:
    counts = {name: max(1, round(value * scale)) for name, value in FULL_COUNTS.items()}
    counts["environments"] = max(ENVIRONMENTS_PER_PIPELINE, counts["environments"])
    if audit_events is not None:
        counts["audit_events"] = audit_events
    return counts


# --- portal rows ------------------------------------------------------------------------------------


@dataclass
class World:
    """Ids of what was seeded, for the audit events and the load driver."""

    teams: list[int] = field(default_factory=list)
    users: dict[str, int] = field(default_factory=dict)
    environments: list[int] = field(default_factory=list)
    pipelines: list[int] = field(default_factory=list)
    solutions: list[int] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    promotions: list[int] = field(default_factory=list)


# Status mix of seeded promotions: most history is done; a few are waiting, scheduled or queued.
PROMOTION_STATUS_MIX: tuple[tuple[str, int], ...] = (
    ("succeeded", 60),
    ("failed", 10),
    ("rolled_back", 3),
    ("pending_approval", 10),
    ("rejected", 5),
    ("cancelled", 7),
    ("scheduled", 3),
    ("queued", 2),
)


def _status_for(index: int) -> str:
    # 37 is coprime with the total weight (100): consecutive promotions spread over the whole mix.
    slot = (index * 37) % sum(weight for _, weight in PROMOTION_STATUS_MIX)
    for status, weight in PROMOTION_STATUS_MIX:
        if slot < weight:
            return status
        slot -= weight
    raise AssertionError("unreachable")


def _sha(label: str, index: int) -> str:
    import hashlib

    return hashlib.sha256(f"{label}:{index}".encode()).hexdigest()


def _bulk(model: Any, rows: Iterator[Any], batch: int = 5000) -> list[int]:
    ids: list[int] = []
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= batch:
            ids.extend(obj.pk for obj in model.objects.bulk_create(chunk))
            chunk = []
    if chunk:
        ids.extend(obj.pk for obj in model.objects.bulk_create(chunk))
    return ids


def seed_portal(counts: dict[str, int], timings: Timings, *, now: datetime) -> World:
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from alm_portal.accounts.models import Team, TeamMembership, User
    from alm_portal.jobs.models import Job
    from deployments.models import Approval, Pipeline, Promotion, Stage
    from environments.models import Environment
    from solutions.models import Solution, SolutionVersion

    world = World()
    pipelines_wanted = max(1, counts["environments"] // ENVIRONMENTS_PER_PIPELINE)
    team_count = max(1, pipelines_wanted // PIPELINES_PER_TEAM)
    password = make_password(PASSWORD)  # hashed once: the same password for every seeded user

    def users_and_teams() -> int:
        teams = [Team(name=f"Team {t:03d}", slug=f"team-{t:03d}") for t in range(team_count)]
        world.teams = [team.pk for team in Team.objects.bulk_create(teams)]
        people = [
            User(username="bench-admin", role="admin", display_name="Bench Admin", password=password),
            User(username="bench-auditor", role="auditor", display_name="Bench Auditor", password=password),
        ]
        for t in range(team_count):
            for persona, role in (("maker", "maker"), ("approver", "approver"), ("approver2", "approver")):
                name = f"{persona}-{t:03d}"
                people.append(User(username=name, role=role, display_name=name.title(), password=password))
        created = User.objects.bulk_create(people)
        world.users = {user.username: user.pk for user in created}
        TeamMembership.objects.bulk_create(
            TeamMembership(team_id=world.teams[t], user_id=world.users[f"{persona}-{t:03d}"])
            for t in range(team_count)
            for persona in ("maker", "approver", "approver2")
        )
        return len(created) + len(teams)

    def environments() -> int:
        def rows() -> Iterator[Environment]:
            for e in range(counts["environments"]):
                team = world.teams[(e // ENVIRONMENTS_PER_PIPELINE) // PIPELINES_PER_TEAM % team_count]
                kind = ("development", "test", "production", "other", "other")[e % ENVIRONMENTS_PER_PIPELINE]
                yield Environment(
                    name=f"env-{e:05d}",
                    url=f"https://env-{e:05d}.crm.dynamics.com",
                    kind=kind,
                    tenant_id="00000000-0000-0000-0000-000000000001",
                    authority="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001",
                    team_id=team,
                    created_at=now - timedelta(days=400),
                    updated_at=now - timedelta(days=400),
                )

        world.environments = _bulk(Environment, rows())
        return len(world.environments)

    stages: dict[int, tuple[tuple[int, int], tuple[int, int]]] = {}  # pipeline -> ((test id, env), (prod id, env))
    pipeline_team: dict[int, int] = {}

    def pipelines() -> int:
        rows = []
        for p in range(pipelines_wanted):
            dev = world.environments[p * ENVIRONMENTS_PER_PIPELINE]
            team = world.teams[p // PIPELINES_PER_TEAM % team_count]
            rows.append(Pipeline(name=f"Pipeline {p:04d}", team_id=team, development_environment_id=dev))
        world.pipelines = [pipeline.pk for pipeline in Pipeline.objects.bulk_create(rows)]
        stage_rows = []
        for p, pipeline_id in enumerate(world.pipelines):
            pipeline_team[pipeline_id] = rows[p].team_id
            base = p * ENVIRONMENTS_PER_PIPELINE
            stage_rows.append(
                Stage(
                    pipeline_id=pipeline_id,
                    name="test",
                    order=1,
                    target_environment_id=world.environments[base + 1],
                    required_approvals=1,
                )
            )
            stage_rows.append(
                Stage(
                    pipeline_id=pipeline_id,
                    name="prod",
                    order=2,
                    target_environment_id=world.environments[base + 2],
                    required_approvals=2,
                )
            )
        created = Stage.objects.bulk_create(stage_rows)
        through = Stage.approver_users.through
        links = []
        for test, prod in zip(created[0::2], created[1::2], strict=True):
            stages[test.pipeline_id] = ((test.pk, test.target_environment_id), (prod.pk, prod.target_environment_id))
            t = world.teams.index(pipeline_team[test.pipeline_id])
            for stage in (test, prod):
                for persona in ("approver", "approver2"):
                    links.append(through(stage_id=stage.pk, user_id=world.users[f"{persona}-{t:03d}"]))
        through.objects.bulk_create(links)
        return len(rows) + len(created)

    solution_pipeline: list[int] = []

    def solutions() -> int:
        def rows() -> Iterator[Solution]:
            for s in range(counts["solutions"]):
                p = s % len(world.pipelines)
                pipeline_id = world.pipelines[p]
                solution_pipeline.append(pipeline_id)
                yield Solution(
                    unique_name=f"bench_solution_{s:06d}",
                    display_name=f"Bench solution {s:06d}",
                    publisher_unique_name="benchpublisher",
                    publisher_prefix="bench",
                    team_id=pipeline_team[pipeline_id],
                    pipeline_id=pipeline_id,
                    home_environment_id=world.environments[p * ENVIRONMENTS_PER_PIPELINE],
                    created_at=now - timedelta(days=365),
                )

        world.solutions = _bulk(Solution, rows())
        return len(world.solutions)

    per_solution = max(1, counts["versions"] // max(1, counts["solutions"]))
    version_sha: dict[int, str] = {}
    version_solution: dict[int, int] = {}

    def versions() -> int:
        def rows() -> Iterator[SolutionVersion]:
            for s, solution_id in enumerate(world.solutions):
                t = world.teams.index(pipeline_team[solution_pipeline[s]])
                maker = world.users[f"maker-{t:03d}"]
                for v in range(per_solution):
                    text = f"1.0.{v // 100}.{v % 100}"
                    sha = _sha("version", s * per_solution + v)
                    created = now - timedelta(days=365) + timedelta(minutes=(s * per_solution + v) % 500_000)
                    unique_name = f"bench_solution_{s:06d}"
                    yield SolutionVersion(
                        solution_id=solution_id,
                        version=text,
                        version_key=text,
                        major=1,
                        minor=0,
                        build=v // 100,
                        revision=v % 100,
                        release_notes=f"Release {text}",
                        manifest_summary={
                            "unique_name": unique_name,
                            "display_name": f"Bench solution {s:06d}",
                            "version": text,
                            "publisher": {"unique_name": "benchpublisher", "prefix": "bench"},
                            "components": {"entity": 3, "web_resource": 5},
                            "root_components": 8,
                            "missing_dependencies": 0,
                            "environment_variables": [],
                            "connection_references": [],
                        },
                        source_kind="uploaded",
                        created_at=created,
                        created_by_id=maker,
                        managed_path=f"solutions/{unique_name}/{text}/managed-{sha[:12]}.zip",
                        managed_sha256=sha,
                        managed_size=1024 * (50 + v),
                        managed_uploaded_at=created,
                        managed_uploaded_by_id=maker,
                    )

        with transaction.atomic():
            world.versions = _bulk(SolutionVersion, rows())
        for index, version_id in enumerate(world.versions):
            version_sha[version_id] = _sha("version", index)
            version_solution[version_id] = world.solutions[index // per_solution]
        return len(world.versions)

    def promotions() -> int:
        total = counts["promotions"]
        plan: list[dict[str, Any]] = []
        solution_index = {solution_id: s for s, solution_id in enumerate(world.solutions)}
        for i in range(total):
            version_id = world.versions[(i * 7919) % len(world.versions)]
            solution_id = version_solution[version_id]
            s = solution_index[solution_id]
            pipeline_id = solution_pipeline[s]
            (test_stage, test_env), (prod_stage, prod_env) = stages[pipeline_id]
            prod = i % 3 == 2
            t = world.teams.index(pipeline_team[pipeline_id])
            requested = now - timedelta(days=360) + timedelta(seconds=i * (360 * 86400 // max(total, 1)))
            plan.append(
                {
                    "index": i,
                    "status": _status_for(i),
                    "version": version_id,
                    "solution": solution_id,
                    "stage": prod_stage if prod else test_stage,
                    "env": prod_env if prod else test_env,
                    "approvals": 2 if prod else 1,
                    "team": t,
                    "requested": requested,
                }
            )
        ran = {"succeeded", "failed", "rolled_back"}
        job_of: dict[int, int] = {}

        def job_rows() -> Iterator[Job]:
            for item in plan:
                if item["status"] not in ran:
                    continue
                finished = item["requested"] + timedelta(hours=2)
                yield Job(
                    kind="import",
                    status="failed" if item["status"] == "failed" else "succeeded",
                    environment_id=item["env"],
                    uses_solution_slot=True,
                    params={"promotion": None},
                    step="done",
                    progress=100,
                    error_code="import_failed" if item["status"] == "failed" else "",
                    attempts=1,
                    async_operation_id=f"00000000-0000-0000-0001-{item['index']:012d}",
                    package_sha256=version_sha[item["version"]],
                    created_at=item["requested"] + timedelta(hours=1),
                    claimed_at=item["requested"] + timedelta(hours=1, seconds=1),
                    submitted_at=item["requested"] + timedelta(hours=1, seconds=2),
                    finished_at=finished,
                    updated_at=finished,
                )
            for item in plan:
                if item["status"] == "queued":
                    yield Job(
                        kind="import",
                        status="pending",
                        environment_id=item["env"],
                        uses_solution_slot=True,
                        package_sha256=version_sha[item["version"]],
                        created_at=item["requested"] + timedelta(hours=1),
                        updated_at=item["requested"] + timedelta(hours=1),
                        not_before=now + timedelta(days=3650),  # nobody dispatches seeded jobs
                    )

        with transaction.atomic():
            job_ids = _bulk(Job, job_rows())
            waiting = [item for item in plan if item["status"] in ran] + [
                item for item in plan if item["status"] == "queued"
            ]
            for item, job_id in zip(waiting, job_ids, strict=True):
                job_of[item["index"]] = job_id

            def promotion_rows() -> Iterator[Promotion]:
                for item in plan:
                    status = item["status"]
                    done = status in ran or status in ("rejected", "cancelled")
                    finished = item["requested"] + timedelta(hours=2) if done else None
                    yield Promotion(
                        status=status,
                        solution_id=item["solution"],
                        version_id=item["version"],
                        stage_id=item["stage"],
                        target_environment_id=item["env"],
                        artifact_sha256=version_sha[item["version"]],
                        requested_by_id=world.users[f"maker-{item['team']:03d}"],
                        requested_at=item["requested"],
                        comment=f"Bench promotion {item['index']}",
                        scheduled_for=now + timedelta(days=30) if status == "scheduled" else None,
                        preflight_status="passed",
                        run_job_id=job_of.get(item["index"]),
                        attempt=1 if status in ran else 0,
                        previous_version="1.0.0.0",
                        error_code="import_failed" if status == "failed" else "",
                        error_message="The import failed (seeded)." if status == "failed" else "",
                        started_at=item["requested"] + timedelta(hours=1) if status in ran else None,
                        finished_at=finished,
                        updated_at=finished or item["requested"],
                    )

            world.promotions = _bulk(Promotion, promotion_rows())

            def approval_rows() -> Iterator[Approval]:
                decided_statuses = ran | {"scheduled", "queued", "rejected"}
                for item, promotion_id in zip(plan, world.promotions, strict=True):
                    if item["status"] not in decided_statuses:
                        continue
                    how_many = 1 if item["status"] == "rejected" else item["approvals"]
                    for n, persona in enumerate(("approver", "approver2")[:how_many]):
                        decided = item["requested"] + timedelta(minutes=10 * (n + 1))
                        yield Approval(
                            promotion_id=promotion_id,
                            approver_id=world.users[f"{persona}-{item['team']:03d}"],
                            decision="reject" if item["status"] == "rejected" else "approve",
                            comment="seeded",
                            decided_at=decided,
                            artifact_sha256=version_sha[item["version"]],
                            target_environment_id=item["env"],
                            expires_at=decided + timedelta(days=30),
                        )

            approvals = len(_bulk(Approval, approval_rows()))
        print(f"    ({len(job_ids):,} jobs, {approvals:,} approvals)", flush=True)
        return len(world.promotions)

    timings.timed("teams and users", users_and_teams)
    timings.timed("environments", environments)
    timings.timed("pipelines and stages", pipelines)
    timings.timed("solutions", solutions)
    timings.timed("versions (metadata only)", versions)
    timings.timed("promotions, approvals, jobs", promotions)
    return world


# --- audit events through COPY --------------------------------------------------------------------


def audit_columns() -> tuple[str, ...]:
    """Columns in COPY order: the hash input (every column but `hash`, in its canonical order), then `hash`."""
    from alm_portal.audit.canonical import CANONICAL_FIELDS

    return (*CANONICAL_FIELDS, "hash")


# (action, object type, before, after, outcome): a cycle that reads like a promotion's life.
_ACTIONS: tuple[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None, str], ...] = (
    ("promotion.requested", "deployments.promotion", None, {"status": "pending_approval"}, "success"),
    ("promotion.approved", "deployments.promotion", {"status": "pending_approval"}, {"status": "approved"}, "success"),
    ("promotion.queued", "deployments.promotion", {"status": "approved"}, {"status": "queued"}, "success"),
    ("job.claimed", "deployments.job", {"status": "pending"}, {"status": "claimed"}, "success"),
    ("promotion.started", "deployments.promotion", {"status": "queued"}, {"status": "running"}, "success"),
    ("job.submitted", "deployments.job", {"status": "claimed"}, {"status": "submitting"}, "success"),
    ("promotion.succeeded", "deployments.promotion", {"status": "running"}, {"status": "succeeded"}, "success"),
    ("solution_version.viewed", "solutions.solutionversion", None, None, "denied"),
)


def _audit_rows(
    *, first_seq: int, count: int, prev_hash: str, start: datetime, step_us: int, world: World, actors: list[int]
) -> Iterator[tuple[list[Any], str]]:
    """(row values in audit_columns() order without hash, hash) for `count` chained events."""
    from alm_portal.audit.canonical import CANONICAL_FIELDS, event_hash, format_timestamp

    promotions = world.promotions or [0]
    versions = world.versions or [0]
    for n in range(count):
        seq = first_seq + n
        action, object_type, before, after, outcome = _ACTIONS[n % len(_ACTIONS)]
        promotion = promotions[(n // len(_ACTIONS)) % len(promotions)]
        object_id = str(versions[n % len(versions)]) if object_type == "solutions.solutionversion" else str(promotion)
        actor = actors[n % len(actors)]
        fields = {
            "seq": seq,
            "occurred_at": format_timestamp(start + timedelta(microseconds=n * step_us)),
            "actor_id": actor,
            "actor_display": f"user {actor}",
            "actor_kind": "user",
            "auth_method": "session",
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "object_repr": f"{object_type.split('.')[1]} {object_id}",
            "related_type": "deployments.promotion" if object_type == "deployments.job" else "",
            "related_id": str(promotion) if object_type == "deployments.job" else "",
            "related_repr": f"promotion {promotion}" if object_type == "deployments.job" else "",
            "before": before,
            "after": after,
            "outcome": outcome,
            "message": "" if outcome == "success" else "not allowed",
            "request_id": f"{seq:032x}",
            "client_ip": f"10.0.{(n >> 8) & 255}.{n & 255}",
            "user_agent": "bench-scale-seed/1.0",
            "prev_hash": prev_hash,
        }
        prev_hash = event_hash(fields)
        yield [fields[name] for name in CANONICAL_FIELDS], prev_hash


def _copy_text(value: Any) -> str:
    """One value in COPY's text format. Seeded values never hold tab, newline or backslash."""
    import json

    if value is None:
        return "\\N"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _produce(write_fd: int, rows: Iterator[tuple[list[Any], str]]) -> None:
    with os.fdopen(write_fd, "w", encoding="utf-8", buffering=1 << 20) as pipe:
        buffer: list[str] = []
        for values, digest in rows:
            buffer.append("\t".join(map(_copy_text, values)) + "\t" + digest + "\n")
            if len(buffer) >= 5000:
                pipe.write("".join(buffer))
                buffer = []
        pipe.write("".join(buffer))


def copy_audit_events(
    *, count: int, world: World, timings: Timings, now: datetime, rebuild_indexes: bool = True
) -> tuple[int, str]:
    """Append `count` chained events after the current head with COPY; return the new (head seq, hash)."""
    from django.db import connection, transaction

    from alm_portal.audit.canonical import GENESIS_HASH
    from alm_portal.audit.locking import AUDIT_CHAIN_LOCK_KEY, hold_transaction_lock
    from alm_portal.audit.models import AuditEvent

    table = AuditEvent._meta.db_table
    actors = sorted(world.users.values()) or [1]
    with transaction.atomic():
        hold_transaction_lock(AUDIT_CHAIN_LOCK_KEY)  # as audit.record(): no event can interleave
        head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
        head_seq, head_hash = head if head else (0, GENESIS_HASH)
        span = timedelta(days=365)
        step_us = max(1, int(span.total_seconds() * 1_000_000) // max(count, 1))
        start = now - timedelta(microseconds=step_us * count) - timedelta(minutes=5)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname <> %s",
                [table, f"{table}_pkey"],
            )
            indexes = cursor.fetchall() if rebuild_indexes else []
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
            raw = cursor.connection  # psycopg2 connection under Django's wrapper
            read_fd, write_fd = os.pipe()
            rows = _audit_rows(
                first_seq=head_seq + 1,
                count=count,
                prev_hash=head_hash,
                start=start,
                step_us=step_us,
                world=world,
                actors=actors,
            )
            started = time.perf_counter()
            child = os.fork()
            if child == 0:  # producer: format and hash; never touches the parent's connection
                os.close(read_fd)
                code = 0
                try:
                    _produce(write_fd, rows)
                except BaseException:
                    import traceback

                    traceback.print_exc()
                    code = 1
                os._exit(code)
            os.close(write_fd)
            columns = ", ".join(f'"{name}"' for name in audit_columns())
            with os.fdopen(read_fd, "rb") as pipe, raw.cursor() as copy_cursor:
                copy_cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", pipe, size=1 << 20)
            _, status = os.waitpid(child, 0)
            if status != 0:
                raise RuntimeError("the audit row producer failed; the COPY is rolled back")
            elapsed = time.perf_counter() - started
            timings.parts.append(("audit events: hash + COPY", count, elapsed))
            print(f"  {'audit events: hash + COPY':<34} {count:>10,} rows  {elapsed:8.1f} s", flush=True)

            def rebuild() -> int:
                cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
                for _, definition in indexes:
                    cursor.execute(definition)
                return count

            if indexes:
                timings.timed(f"audit events: {len(indexes)} indexes rebuilt", rebuild)
        new_head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    assert new_head is not None
    return new_head[0], new_head[1]


def vacuum_analyze() -> int:
    """VACUUM, not only ANALYZE: bulk-loaded tables have an empty visibility map until a vacuum, so every
    COUNT(*) (each list page's count) reads the whole heap instead of an index. A live database gets
    this from autovacuum after large inserts; the seed must not depend on autovacuum being on."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
    return 0


def seed(*, counts: dict[str, int], rebuild_indexes: bool = True) -> tuple[World, Timings]:
    """Seed portal rows and audit events into the configured (empty) database."""
    from alm_portal.audit import checkpoints
    from environments.models import Environment

    if Environment.objects.exists():
        raise SystemExit("the database already holds environments; use --recreate or another --database")
    timings = Timings()
    from django.utils import timezone

    now = timezone.now()
    world = seed_portal(counts, timings, now=now)
    head: list[tuple[int, str]] = []

    def audit() -> int:
        head.append(
            copy_audit_events(
                count=counts["audit_events"], world=world, timings=timings, now=now, rebuild_indexes=rebuild_indexes
            )
        )
        return counts["audit_events"]

    audit()
    timings.timed("VACUUM (ANALYZE)", vacuum_analyze)
    checkpoint = checkpoints.write_checkpoint(head_seq=head[0][0], head_hash=head[0][1])
    print(f"  checkpoint {checkpoint.name}: head_seq={checkpoint.head_seq} head_hash={checkpoint.head_hash}")
    return world, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="PostgreSQL database to seed")
    parser.add_argument("--pg", default=DEFAULT_PG, help=f"server URL without the database (default {DEFAULT_PG})")
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = the issue's counts (default)")
    parser.add_argument("--audit-events", type=int, default=None, help="override the audit event count")
    parser.add_argument("--recreate", action="store_true", help="drop, create and migrate the database first")
    parser.add_argument("--keep-indexes", action="store_true", help="COPY into the indexed audit table")
    args = parser.parse_args()

    counts = scaled_counts(args.scale, args.audit_events)
    if args.recreate:
        recreate_database(database=args.database, pg=args.pg)
    configure_django(database=args.database, pg=args.pg)
    from django.core.management import call_command

    if args.recreate:
        started = time.perf_counter()
        call_command("migrate", verbosity=0, interactive=False)
        print(f"  migrate: {time.perf_counter() - started:.1f} s")
    print(f"seeding {args.database}: " + ", ".join(f"{name}={value:,}" for name, value in counts.items()), flush=True)
    _, timings = seed(counts=counts, rebuild_indexes=not args.keep_indexes)
    print()
    print(timings.table())


if __name__ == "__main__":
    main()
