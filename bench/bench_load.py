"""HTTP load on a scale-seeded database (issue 8): gunicorn as shipped, wrk from a second process.

    .venv/bin/python bench/scale_seed.py --database alm_bench_scale --recreate        # once
    .venv/bin/python bench/bench_load.py --database alm_bench_scale [--duration 30] [--connections 8]
        [--workers 3 --threads 4] [--only promotions-list,dashboard] [--port 8790]

Needs `wrk` (Debian: apt-get install wrk). Starts gunicorn with the Dockerfile's worker model (3
workers x 4 threads by default) on the seeded database, with DEBUG off and the access log off, then
runs wrk against one scenario at a time: --connections keep-alive connections issuing GETs to
random paths of that scenario (random pages, random ids across the whole seeded range). API calls
carry a bearer token (read scope) of the seeded admin; the dashboard uses the admin's session cookie
(the admin sees every pipeline, the widest dashboard) and a maker's (one team).

SQL per request is measured separately, in this process, through Django's test client with
CaptureQueriesContext on a sample of each scenario's paths (same user, same database).

Prints one table: req/s, p50/p95/p99/max latency, errors (non-2xx/3xx plus socket errors) and SQL
queries per request (min-max over the sample), next to the issue's targets. Never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import scale_seed  # noqa: E402

LUA = HERE / "wrk_paths.lua"
PATHS_PER_SCENARIO = 2000
SQL_SAMPLE = 8

# scenario name -> (kind, target p95 in ms, who)
SCENARIOS: dict[str, tuple[str, int, str]] = {
    "promotions-list": ("list", 300, "api"),
    "promotion-detail": ("detail", 150, "api"),
    "versions-list": ("list", 300, "api"),
    "version-detail": ("detail", 150, "api"),
    "audit-list": ("list", 300, "api"),
    "audit-by-object": ("detail", 150, "api"),
    "dashboard-admin": ("dashboard", 500, "admin-session"),
    "dashboard-maker": ("dashboard", 500, "maker-session"),
}
LIST_TARGET_RPS = 50


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def parse_wrk_output(text: str) -> WrkResult:
    """The WRKJSON line that bench/wrk_paths.lua prints at the end of a run."""
    match = re.search(r"^WRKJSON (\{.*\})$", text, re.MULTILINE)
    if match is None:
        raise ValueError(f"no WRKJSON line in wrk output:\n{text}")
    data = json.loads(match.group(1))
    errors = sum(data[key] for key in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts"))
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p95_ms=data["p95_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )


# --- preparation (in this process, against the same database) --------------------------------------


def credentials() -> dict[str, tuple[str, str]]:
    """Header (name, value) per persona: a fresh read token for the admin, session cookies for pages."""
    from django.conf import settings
    from django.test import Client

    from alm_portal.accounts.models import User
    from alm_portal.accounts.services import api_token_create
    from alm_portal.audit.context import AuditContext

    admin = User.objects.get(username="bench-admin")
    maker = User.objects.get(username="maker-000")
    _, token = api_token_create(
        user=admin, scopes=["read"], context=AuditContext.system(), name=f"bench-load-{time.time_ns()}", days=1
    )
    headers = {"api": ("Authorization", f"Bearer {token}")}
    for persona, user in (("admin-session", admin), ("maker-session", maker)):
        client = Client()
        client.force_login(user)
        headers[persona] = (
            "Cookie",
            f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}",
        )
    return headers


def scenario_paths(rng: random.Random) -> dict[str, list[str]]:
    from alm_portal.audit.models import AuditEvent
    from deployments.models import Promotion
    from solutions.models import SolutionVersion

    promotion_ids = list(Promotion.objects.values_list("pk", flat=True))
    version_ids = list(SolutionVersion.objects.values_list("pk", flat=True))
    promotions_pages = max(1, len(promotion_ids) // 50)
    versions_pages = max(1, len(version_ids) // 50)
    head = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 1
    objects = list(
        AuditEvent.objects.filter(seq__lte=head, object_type="deployments.promotion")
        .order_by("-seq")
        .values_list("object_id", flat=True)[:5000]
    )
    n = PATHS_PER_SCENARIO

    # Most traffic reads the first pages; one request in ten goes anywhere (deep OFFSET pages).
    def page(pages: int) -> int:
        return rng.randint(1, min(pages, 20)) if rng.random() < 0.9 else rng.randint(1, pages)

    return {
        "promotions-list": [f"/api/v1/promotions/?page={page(promotions_pages)}" for _ in range(n)],
        "promotion-detail": [f"/api/v1/promotions/{rng.choice(promotion_ids)}/" for _ in range(n)],
        "versions-list": [f"/api/v1/versions/?page={page(versions_pages)}" for _ in range(n)],
        "version-detail": [f"/api/v1/versions/{rng.choice(version_ids)}/" for _ in range(n)],
        "audit-list": [
            rng.choice(
                [
                    "/api/v1/audit-events/",
                    "/api/v1/audit-events/?action=promotion",
                    "/api/v1/audit-events/?outcome=denied",
                ]
            )
            for _ in range(n)
        ],
        "audit-by-object": [
            f"/api/v1/audit-events/?object_type=deployments.promotion&object_id={rng.choice(objects)}" for _ in range(n)
        ],
        "dashboard-admin": ["/"],
        "dashboard-maker": ["/"],
    }


def sql_per_request(paths: list[str], header: tuple[str, str], rng: random.Random) -> tuple[int, int, set[int]]:
    """(min, max, statuses) of SQL queries per request over a sample of `paths`."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    meta_name = "HTTP_" + header[0].upper().replace("-", "_")
    client = Client()
    counts, statuses = [], set()
    for path in rng.sample(paths, min(SQL_SAMPLE, len(paths))):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(path, **{meta_name: header[1]})
        counts.append(len(queries))
        statuses.add(response.status_code)
    return min(counts), max(counts), statuses


# --- gunicorn and wrk ---------------------------------------------------------------------------


SERVER_MODE = {"ALM_MODE": "development"}


def prepare_static(*, database: str, pg: str) -> None:
    """Pages need the static manifest with DEBUG off: run collectstatic first (before Django is set up
    here). If it cannot build the manifest, this process and the server run in test mode, whose only
    differences are plain (unhashed) static files and no autoreload."""
    env = {**os.environ, "DATABASE_URL": f"{pg}/{database}", "ALM_MODE": "development", "DEBUG": "false"}
    done = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    mode = "development"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        print(f"collectstatic failed ({last[:200]}); this run uses ALM_MODE=test (unhashed static files)")
        mode = "test"
    os.environ["ALM_MODE"] = SERVER_MODE["ALM_MODE"] = mode


def start_gunicorn(*, database: str, pg: str, port: int, workers: int, threads: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"{pg}/{database}",
        ALM_MODE=SERVER_MODE["ALM_MODE"],
        DEBUG="false",
        ALM_ARTIFACT_DIR=str(scale_seed.bench_var_dir(database) / "artifacts"),
        # The load is a few tokens at hundreds of requests a second: the API throttles (which would answer most
        # of them 429 at their production rates) are off for benchmarks (bench/README.md).
        ALM_THROTTLE_ANON="off",
        ALM_THROTTLE_USER="off",
        ALM_THROTTLE_FAILED_AUTH="off",
    )
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "alm_portal.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--graceful-timeout",
        "10",
    ]
    log = open(scale_seed.bench_var_dir(database) / "gunicorn.log", "ab")  # noqa: SIM115 - lives with the process
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.5)
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}; see its log")
    stop(process)
    raise RuntimeError("gunicorn did not answer /healthz within 60 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run_wrk(
    *, port: int, paths: list[str], header: tuple[str, str], duration: int, connections: int, threads: int
) -> WrkResult:
    with tempfile.NamedTemporaryFile("w", suffix=".paths", delete=False) as handle:
        handle.write("\n".join(paths) + "\n")
        paths_file = handle.name
    try:
        command = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            f"http://127.0.0.1:{port}",
            "--",
            paths_file,
            header[0],
            header[1],
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        return parse_wrk_output(done.stdout)
    finally:
        os.unlink(paths_file)


def server_cpu_seconds(master: int, database: str) -> dict[int, float]:
    """CPU seconds so far of every gunicorn worker and every PostgreSQL client backend on `database`
    (PostgreSQL's short-lived parallel query workers are not included)."""
    pids = [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    listed = subprocess.run(
        ["psql", "-At", "-c", f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'"],
        env={**os.environ, "PGHOST": "127.0.0.1", "PGUSER": "postgres", "PGDATABASE": "postgres"},
        capture_output=True,
        text=True,
    ).stdout
    pids += [int(pid) for pid in listed.split()]
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return seconds


def machine() -> str:
    uname = " ".join(os.uname())
    with open("/proc/meminfo") as handle:
        mem_kb = int(handle.readline().split()[1])
    pg = subprocess.run(
        ["psql", "-At", "-c", "SHOW server_version"],
        env={**os.environ, "PGHOST": "127.0.0.1", "PGUSER": "postgres", "PGDATABASE": "postgres"},
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{os.cpu_count()} cores, {mem_kb / 1024 / 1024:.1f} GiB RAM, PostgreSQL {pg}, {uname}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--pg", default=scale_seed.DEFAULT_PG)
    parser.add_argument("--duration", type=int, default=30, help="seconds per scenario (default 30)")
    parser.add_argument("--connections", type=int, default=8, help="wrk keep-alive connections (default 8)")
    parser.add_argument(
        "--dashboard-connections",
        type=int,
        default=2,
        help="connections for the dashboard scenarios (default 2: full page renders, a few people at once)",
    )
    parser.add_argument(
        "--wrk-threads", type=int, default=1, help="wrk threads (default 1: one core stays for the server)"
    )
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (Dockerfile: 3)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (Dockerfile: 4)")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    only = [name for name in args.only.split(",") if name] or list(SCENARIOS)
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")

    prepare_static(database=args.database, pg=args.pg)
    scale_seed.configure_django(database=args.database, pg=args.pg)
    rng = random.Random(args.seed)
    headers = credentials()
    paths = scenario_paths(rng)
    print("SQL per request (test client, CaptureQueriesContext):", flush=True)
    sql: dict[str, tuple[int, int, set[int]]] = {}
    for name in only:
        sql[name] = sql_per_request(paths[name], headers[SCENARIOS[name][2]], rng)
        print(f"  {name:<18} {sql[name][0]}-{sql[name][1]} queries, status {sorted(sql[name][2])}", flush=True)

    from django.db import connection

    connection.close()  # keep no idle connection of ours open during the load
    server = start_gunicorn(
        database=args.database, pg=args.pg, port=args.port, workers=args.workers, threads=args.threads
    )
    results: dict[str, WrkResult] = {}
    cpu_ms: dict[str, float] = {}
    connections_of = {
        name: args.dashboard_connections if SCENARIOS[name][0] == "dashboard" else args.connections for name in only
    }
    try:
        for name in only:
            # A short warm-up per scenario: first requests fill caches and open pooled connections.
            run_wrk(
                port=args.port,
                paths=paths[name],
                header=headers[SCENARIOS[name][2]],
                duration=3,
                connections=connections_of[name],
                threads=args.wrk_threads,
            )
            cpu_before = server_cpu_seconds(server.pid, args.database)
            results[name] = run_wrk(
                port=args.port,
                paths=paths[name],
                header=headers[SCENARIOS[name][2]],
                duration=args.duration,
                connections=connections_of[name],
                threads=args.wrk_threads,
            )
            cpu_after = server_cpu_seconds(server.pid, args.database)
            used = sum(value - cpu_before.get(pid, 0.0) for pid, value in cpu_after.items())
            cpu_ms[name] = 1000 * used / max(results[name].requests, 1)
            r = results[name]
            print(f"  {name:<18} {r.rps:7.1f} req/s  p95 {r.p95_ms:7.1f} ms  errors {r.errors}", flush=True)
    finally:
        stop(server)

    print()
    print(f"Machine: {machine()}")
    print(
        f"gunicorn {args.workers} workers x {args.threads} threads; wrk {args.wrk_threads} thread(s), "
        f"{args.connections} connections ({args.dashboard_connections} for dashboards), {args.duration} s per "
        "scenario after a 3 s warm-up; requests slower than 10 s count as timeouts (errors); "
        "database, server and load generator on the same machine."
    )
    print()
    header = (
        f"| {'scenario':<18} | {'req/s':>7} | {'p50 ms':>7} | {'p95 ms':>7} | {'p99 ms':>7} | {'max ms':>7} "
        f"| {'errors':>6} | {'SQL/req':>7} | {'CPU ms/req':>10} | {'conns':>5} | {'target':<26} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell) + 0) for cell in header.split("|")[1:-1]) + "|")
    for name in only:
        r = results[name]
        kind, p95_target, _ = SCENARIOS[name]
        target = f"p95 <= {p95_target} ms" + (f", >= {LIST_TARGET_RPS} req/s" if kind == "list" else "")
        low, high, _ = sql[name]
        queries = f"{low}" if low == high else f"{low}-{high}"
        print(
            f"| {name:<18} | {r.rps:7.1f} | {r.p50_ms:7.1f} | {r.p95_ms:7.1f} | {r.p99_ms:7.1f} | {r.max_ms:7.1f} "
            f"| {r.errors:>6} | {queries:>7} | {cpu_ms[name]:10.1f} | {connections_of[name]:>5} | {target:<26} |"
        )


if __name__ == "__main__":
    main()
