"""Inventory sync at scale against the Dataverse emulator: wall time and SQL statements per environment.

    .venv/bin/python bench/bench_inventory_sync.py                      # 300 environments x 200 solutions
    .venv/bin/python bench/bench_inventory_sync.py --environments 30 --solutions 50
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/alm_dev_env .venv/bin/python bench/bench_inventory_sync.py

Creates a throw-away test database (test_<name>, or SQLite in memory) and a private emulator
process, registers one environment per emulator org (each org holds --solutions solutions and its
own client credential, so every environment fetches its own token; --orgs N shares N orgs between
the environments to shorten the set-up), then runs three passes of
services.environment_sync_inventory() one environment after the other:

  first     every solution is new (intervals and history rows inserted)
  unchanged nothing changed since the last sync
  changed   --changed of the solutions of every org were upgraded behind the portal's back

Environments are of kind "development" by default: drift of kind "unregistered" is only looked for in
test and production, where every finding adds its own audit row (--kind test shows that cost).
Never part of the test suite; it prints a table and exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alm_portal.settings")
os.environ.setdefault("ALM_MODE", "test")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from alm_portal.accounts import services as accounts_services  # noqa: E402
from alm_portal.audit.context import AuditContext  # noqa: E402
from environments import services  # noqa: E402
from environments.models import InventoryInterval, SolutionHistoryEntry  # noqa: E402
from tests.emulator.packages import make_solution  # noqa: E402
from tests.support.emulator import start_emulator  # noqa: E402


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _run_pass(name: str, environments: list, context: AuditContext) -> dict:
    walls: list[float] = []
    queries: list[int] = []
    started = time.perf_counter()
    for environment in environments:
        # The query log is a bounded deque; a full one would make every capture look empty.
        connection.queries_log.clear()
        with CaptureQueriesContext(connection) as captured:
            t0 = time.perf_counter()
            services.environment_sync_inventory(environment=environment, context=context)
            walls.append(time.perf_counter() - t0)
        queries.append(len(captured.captured_queries))
    return {
        "pass": name,
        "environments": len(environments),
        "total_s": time.perf_counter() - started,
        "mean_ms": statistics.mean(walls) * 1000,
        "p95_ms": _percentile(walls, 0.95) * 1000,
        "max_ms": max(walls) * 1000,
        "sql_min": min(queries),
        "sql_max": max(queries),
        "sql_mean": statistics.mean(queries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--environments", type=int, default=300)
    parser.add_argument("--solutions", type=int, default=200)
    parser.add_argument("--changed", type=float, default=0.1, help="share of solutions upgraded before pass 3")
    parser.add_argument(
        "--orgs", type=int, default=0, help="emulator orgs to create (default: one per environment); fewer are shared"
    )
    parser.add_argument("--kind", default="development", choices=["development", "test", "production", "other"])
    args = parser.parse_args()

    logging.disable(logging.WARNING)  # drift notifications would flood the terminal
    settings.DEBUG = False
    settings.ALM_ALLOW_LOOPBACK = True
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    database = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    print(f"database: {connection.vendor} {database}", flush=True)
    try:
        with start_emulator(Path(tempfile.mkdtemp(prefix="bench-emulator-"))) as server:
            settings.ALM_DATAVERSE_CA_BUNDLE = str(server.ca_file)
            context = AuditContext.system()
            team = accounts_services.team_create(name="Bench", slug="bench", context=context)
            packages = [make_solution(f"BenchSol{i:03d}", f"1.0.{i}.0") for i in range(args.solutions)]
            upgrades = [
                make_solution(f"BenchSol{i:03d}", f"1.1.{i}.0") for i in range(int(args.solutions * args.changed))
            ]
            set_up = time.perf_counter()
            orgs, environments = [], []
            org_count = args.orgs or args.environments
            for index in range(org_count):
                # Hundreds of organisations: under the main port's path rather than a port each.
                org = server.new_org(f"bench-{index:04d}", addressing="path")
                for package in packages:
                    org.install(package)
                orgs.append(org)
                if (index + 1) % 25 == 0:
                    print(f"  set up {index + 1}/{org_count} orgs", flush=True)
            for index in range(args.environments):
                org = orgs[index % org_count]
                environments.append(
                    services.environment_create(
                        name=f"bench-env-{index:04d}",
                        url=org.url,
                        kind=args.kind,
                        tenant_id=org.tenant_id,
                        authority=org.authority,
                        team=team,
                        client_id=org.client_id,
                        credential_type="secret",
                        client_secret=org.client_secret,
                        context=context,
                        check_health=False,
                    )
                )
            print(f"set-up: {time.perf_counter() - set_up:.1f}s", flush=True)

            results = [_run_pass("first", environments, context)]
            results.append(_run_pass("unchanged", environments, context))
            for org in orgs:
                for package in upgrades:
                    org.install(package, mode="upgrade")
            results.append(_run_pass(f"changed ({len(upgrades)}/env)", environments, context))

            intervals = InventoryInterval.objects.count()
            history = SolutionHistoryEntry.objects.count()
    finally:
        connection.creation.destroy_test_db(database, verbosity=0)

    print()
    print(
        f"inventory sync: {args.environments} environments x {args.solutions} solutions "
        f"(+ the emulator's platform solutions), {len(orgs)} emulator orgs, {connection.vendor}, kind={args.kind}"
    )
    header = f"{'pass':<18}{'envs':>6}{'total s':>10}{'mean ms':>10}{'p95 ms':>10}{'max ms':>10}{'SQL/env':>14}"
    print(header)
    print("-" * len(header))
    for row in results:
        sql = f"{row['sql_min']}" if row["sql_min"] == row["sql_max"] else f"{row['sql_min']}-{row['sql_max']}"
        print(
            f"{row['pass']:<18}{row['environments']:>6}{row['total_s']:>10.1f}{row['mean_ms']:>10.1f}"
            f"{row['p95_ms']:>10.1f}{row['max_ms']:>10.1f}{sql:>14}"
        )
    print(f"rows at the end: {intervals} inventory intervals, {history} solution history entries")


if __name__ == "__main__":
    main()
