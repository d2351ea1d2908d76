"""Security II (issue 15) at full scale: exports, denial noise, an XML element flood and checkpoints, for this
checkout and, beside it in the same run, a reference checkout (e.g. main) on the same database and machine.

    .venv/bin/python bench/scale_seed.py --database alm_bench_sec --recreate --scale 0.01 --audit-events 1000000
    mkdir -p /tmp/alm-reference && git archive main | tar -x -C /tmp/alm-reference
    .venv/bin/python bench/bench_security_limits.py --database alm_bench_sec --reference /tmp/alm-reference

Each measurement starts a fresh gunicorn (3 workers x 4 threads, the Dockerfile's; DEBUG off; development mode,
so the throttles run at their production rates) from the code under test, with this checkout's virtualenv:

- export: one full CSV and one full JSON Lines export of the whole log over HTTP: seconds, MB, CPU seconds and
  peak RSS growth (VmHWM) of the gunicorn workers;
- concurrent: eight auditors start a JSON Lines export at once while /healthz is asked once a second (5 s
  timeout): how many exports ran and were refused, /healthz answers and its slowest answer;
- denials: --denials requests with a malformed bearer token and a 2 KB User-Agent: status codes, and the audit
  rows they left (this checkout's per-window counts are turned into their events first, as beat would);
- flood: one upload of a zip whose customizations.xml holds --flood-elements tiny elements (under every zip
  limit): status, seconds, peak RSS growth of the workers;
- checkpoints (this checkout only, in this process): writing --checkpoints checkpoints of the chain, then
  reading them all back as a verification does.

Never pass/fail. This checkout keeps its throttle counts and export slots in Redis when REDIS_URL is set (give
the benchmark a database number of its own), else in the database cache table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import scale_seed  # noqa: E402

MIB = 1024 * 1024
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    label: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        master = self.process.pid
        return sorted(int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split())


@dataclass
class WorkerSample:
    hwm_kib: dict[int, int] = field(default_factory=dict)
    cpu_s: dict[int, float] = field(default_factory=dict)


def sample(server: Server) -> WorkerSample:
    taken = WorkerSample()
    for pid in server.workers():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                taken.hwm_kib[pid] = int(line.split()[1])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        taken.cpu_s[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    return taken


def growth(before: WorkerSample, after: WorkerSample) -> tuple[float, float]:
    """(largest peak-RSS growth of one worker in MiB, CPU seconds of all workers)."""
    rss = max((after.hwm_kib[pid] - before.hwm_kib.get(pid, after.hwm_kib[pid])) / 1024 for pid in after.hwm_kib)
    cpu = sum(after.cpu_s[pid] - before.cpu_s.get(pid, 0.0) for pid in after.cpu_s)
    return rss, cpu


def start_server(code: Path, *, label: str, database: str, pg: str, env: dict[str, str], port: int) -> Server:
    full = dict(os.environ)
    full.update(env)
    full.update(DATABASE_URL=f"{pg}/{database}", ALM_MODE="development", DEBUG="false")
    log = open(scale_seed.bench_var_dir(database) / f"gunicorn-{label}.log", "ab")  # noqa: SIM115
    command = [str(Path(sys.executable).with_name("gunicorn")), "alm_portal.wsgi", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", "3", "--threads", "4", "--graceful-timeout", "10"]
    process = subprocess.Popen(command, cwd=code, env=full, stdout=log, stderr=log, start_new_session=True)
    server = Server(process=process, port=port, label=label)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn ({label}) exited; see its log")
    # Warm every worker with ordinary requests, in parallel.
    threads = [threading.Thread(target=_get, args=(server.url + "/healthz",)) for _ in range(36)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(1)
    return server


def stop(server: Server) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


def _get(url: str) -> None:
    with contextlib.suppress(requests.RequestException):
        requests.get(url, timeout=10)


def read_export(server: Server, token: str, file_format: str) -> tuple[int, int]:
    """(status, bytes) of one export read to its end."""
    with requests.get(
        f"{server.url}/api/v1/audit-events/export/",
        params={"file_format": file_format},
        headers={"Authorization": f"Bearer {token}"},
        stream=True,
        timeout=600,
    ) as answer:
        size = sum(len(chunk) for chunk in answer.iter_content(MIB)) if answer.status_code == 200 else 0
        return answer.status_code, size


def measure_export(server: Server, token: str, file_format: str) -> dict[str, Any]:
    before = sample(server)
    started = time.perf_counter()
    status, size = read_export(server, token, file_format)
    seconds = time.perf_counter() - started
    rss, cpu = growth(before, sample(server))
    return {"status": status, "seconds": seconds, "mb": size / 1e6, "cpu_s": cpu, "rss_mib": rss}


def measure_concurrent(server: Server, tokens: list[str]) -> dict[str, Any]:
    results: list[tuple[int, int]] = []
    health: list[float | None] = []
    lock = threading.Lock()
    done = threading.Event()

    def export(token: str) -> None:
        outcome = read_export(server, token, "jsonl")
        with lock:
            results.append(outcome)

    def probe() -> None:
        while not done.is_set():
            started = time.perf_counter()
            try:
                ok = requests.get(server.url + "/healthz", timeout=5).status_code == 200
                took: float | None = time.perf_counter() - started if ok else None
            except requests.RequestException:
                took = None
            with lock:
                health.append(took)
            done.wait(max(0.0, 1.0 - (time.perf_counter() - started)))

    prober = threading.Thread(target=probe)
    prober.start()
    started = time.perf_counter()
    exporters = [threading.Thread(target=export, args=(token,)) for token in tokens]
    for thread in exporters:
        thread.start()
    for thread in exporters:
        thread.join()
    seconds = time.perf_counter() - started
    done.set()
    prober.join()
    answered = [took for took in health if took is not None]
    return {
        "exports_ran": sum(1 for status, _ in results if status == 200),
        "refused_429": sum(1 for status, _ in results if status == 429),
        "seconds": seconds,
        "healthz_ok": len(answered),
        "healthz_failed": len(health) - len(answered),
        "healthz_slowest_s": max(answered) if answered else None,
    }


def measure_denials(server: Server, count: int, audit_rows: Any, flush: Any) -> dict[str, Any]:
    head = audit_rows()
    statuses: dict[int, int] = {}
    agent = "probe/" + "x" * 2048
    session = requests.Session()
    started = time.perf_counter()
    for _ in range(count):
        status = session.get(
            server.url + "/api/v1/me/", headers={"Authorization": "Bearer not-a-token", "User-Agent": agent}, timeout=10
        ).status_code
        statuses[status] = statuses.get(status, 0) + 1
    seconds = time.perf_counter() - started
    flush()
    return {"statuses": statuses, "req_per_s": count / seconds, "audit_rows": audit_rows() - head}


def flood_zip(path: Path, elements: int) -> Path:
    """A valid solution zip whose customizations.xml holds `elements` tiny elements named from 676 two-letter
    tags in random order: ~5 bytes each, compressed about 4:1, so no zip limit applies."""
    corpus = REPO / "tests" / "fixtures" / "corpus" / "solutions" / "Contoso_sample_1_0_0_1_managed.zip"
    rng = random.Random(15)
    tags = [f"<{a}{b}/>".encode() for a in "abcdefghijklmnopqrstuvwxyz" for b in "abcdefghijklmnopqrstuvwxyz"]
    with zipfile.ZipFile(corpus) as original, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info in original.infolist():
            if info.filename.lower() != "customizations.xml":
                target.writestr(info, original.read(info.filename))
        with target.open("customizations.xml", "w", force_zip64=True) as out:
            out.write(b"<ImportExportXml><Entities />")
            for start in range(0, elements, 100_000):
                out.write(b"".join(rng.choice(tags) for _ in range(min(100_000, elements - start))))
            out.write(b"<Languages><Language>1033</Language></Languages></ImportExportXml>")
    return path


def measure_flood(server: Server, token: str, package: Path) -> dict[str, Any]:
    before = sample(server)
    started = time.perf_counter()
    with package.open("rb") as handle:
        answer = requests.post(
            server.url + "/api/v1/versions/",
            headers={"Authorization": f"Bearer {token}"},
            files={"file": (package.name, handle, "application/zip")},
            timeout=900,
        )
    seconds = time.perf_counter() - started
    rss, cpu = growth(before, sample(server))
    try:
        code = answer.json().get("error", {}).get("details", {}).get("file", [""])[0][:60] or answer.status_code
    except ValueError:
        code = answer.status_code
    return {"status": answer.status_code, "answer": code, "seconds": seconds, "rss_mib": rss, "cpu_s": cpu}


def measure_checkpoints(count: int) -> dict[str, Any]:
    from django.test import override_settings

    from alm_portal.audit import checkpoints

    folder = Path(tempfile.mkdtemp(prefix="bench-checkpoints-"))
    storages = {
        "artifacts": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(folder)}}
    }
    try:
        with override_settings(STORAGES={**_settings().STORAGES, **storages}):
            from django.core.files.storage import storages as handler

            handler._storages = {}  # pick up the overridden artifacts storage
            first = time.perf_counter()
            checkpoints.write_checkpoint()
            first_ms = (time.perf_counter() - first) * 1000
            started = time.perf_counter()
            for _ in range(count - 2):
                checkpoints.write_checkpoint()
            bulk = time.perf_counter() - started
            last = time.perf_counter()
            checkpoints.write_checkpoint()
            last_ms = (time.perf_counter() - last) * 1000
            started = time.perf_counter()
            loaded = checkpoints.load_checkpoints()
            load_s = time.perf_counter() - started
            handler._storages = {}
        return {
            "written": count,
            "first_write_ms": first_ms,
            "mean_write_ms": bulk * 1000 / max(1, count - 2),
            "last_write_ms": last_ms,
            "load_all_s": load_s,
            "valid": len(loaded.valid),
            "problems": len(loaded.problems),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _settings() -> Any:
    from django.conf import settings

    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--pg", default=scale_seed.DEFAULT_PG)
    parser.add_argument("--reference", type=Path, help="another checkout to measure beside this one (e.g. main)")
    parser.add_argument("--denials", type=int, default=1000)
    parser.add_argument("--flood-elements", type=int, default=10_000_000)
    parser.add_argument("--checkpoints", type=int, default=20_000)
    parser.add_argument("--port", type=int, default=8795)
    parser.add_argument("--only", default="export,concurrent,denials,flood,checkpoints")
    args = parser.parse_args()
    parts = set(args.only.split(","))

    scale_seed.configure_django(database=args.database, pg=args.pg)
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from alm_portal.accounts.models import User
    from alm_portal.accounts.services import api_token_create, user_create
    from alm_portal.audit.context import AuditContext
    from alm_portal.audit.denials import denied_requests_flush
    from alm_portal.audit.models import AuditEvent

    context = AuditContext.system()
    suffix = time.time_ns()
    auditors = [
        user_create(username=f"bench-auditor-{suffix}-{n}", role="auditor", password=None, context=context)
        for n in range(8)
    ]
    tokens = [
        api_token_create(user=user, scopes=["read"], context=context, name=f"bench-{suffix}", days=1)[1]
        for user in auditors
    ]
    maker = User.objects.filter(role="maker").order_by("pk").first()
    maker_token = api_token_create(
        user=maker, scopes=["read", "request"], context=context, name=f"bench-{suffix}", days=1
    )[1]
    events = AuditEvent.objects.count()
    print(f"database {args.database}: {events:,} audit events", flush=True)
    # Both codes run with this checkout's secrets (tokens were made with its pepper) and their own artifacts.
    shared_env = {
        "ALM_VAR_DIR": str(settings.VAR_DIR),
        "SECRET_KEY": settings.SECRET_KEY,
        "ALM_TOKEN_PEPPER": settings.ALM_TOKEN_PEPPER,
        "ALM_ENCRYPTION_KEY": ",".join(settings.ALM_ENCRYPTION_KEYS),
        "ALM_AUDIT_CHECKPOINT_KEY": settings.ALM_AUDIT_CHECKPOINT_KEY,
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
    }
    connection.close()

    def audit_rows() -> int:
        count = AuditEvent.objects.count()
        connection.close()
        return count

    def flush_this() -> None:
        denied_requests_flush(now=timezone.now() + timezone.timedelta(hours=1))
        connection.close()

    codes = [("this", REPO, flush_this)]
    if args.reference:
        codes.append(("reference", args.reference.resolve(), lambda: None))
    results: dict[str, dict[str, Any]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="bench-security-"))
    package = None
    if "flood" in parts:
        started = time.perf_counter()
        package = flood_zip(workdir / "flood.zip", args.flood_elements)
        print(f"flood zip: {package.stat().st_size / MIB:.1f} MiB built in {time.perf_counter() - started:.0f} s")
    try:
        for label, code, flush in codes:
            env = {**shared_env, "ALM_ARTIFACT_DIR": str(workdir / f"artifacts-{label}")}

            def run(part: str, measure: Any, label: str = label, code: Path = code, env: dict[str, str] = env) -> None:
                server = start_server(code, label=label, database=args.database, pg=args.pg, env=env, port=args.port)
                try:
                    load = os.getloadavg()[0]
                    outcome = measure(server)
                    outcome["load_avg"] = f"{load:.1f} → {os.getloadavg()[0]:.1f}"
                    results[f"{part} ({label})"] = outcome
                    print(f"{part} ({label}): {json.dumps(outcome, default=str)}", flush=True)
                finally:
                    stop(server)

            if "export" in parts:
                run("export csv", lambda server: measure_export(server, tokens[0], "csv"))
                run("export jsonl", lambda server: measure_export(server, tokens[0], "jsonl"))
            if "concurrent" in parts:
                run("8 concurrent jsonl exports", lambda server: measure_concurrent(server, tokens))
            if "denials" in parts:
                run(
                    f"{args.denials} malformed tokens",
                    lambda server, flush=flush: measure_denials(server, args.denials, audit_rows, flush),
                )
            if "flood" in parts and package is not None:
                run(
                    f"upload of {args.flood_elements:,} elements",
                    lambda server: measure_flood(server, maker_token, package),
                )
        if "checkpoints" in parts:
            outcome = measure_checkpoints(args.checkpoints)
            results["checkpoints (this)"] = outcome
            print(f"checkpoints (this): {json.dumps(outcome)}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    for name, outcome in results.items():
        print(
            f"{name:<44} "
            + "  ".join(
                f"{key}={value:.1f}" if isinstance(value, float) else f"{key}={value}" for key, value in outcome.items()
            )
        )


if __name__ == "__main__":
    main()
