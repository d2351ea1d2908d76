"""Peak memory of a web worker while it receives a 300 MB solution upload (issue 8, target P1).

    .venv/bin/python bench/bench_upload_memory.py --database alm_bench_scale [--size-mib 300]
        [--workers 3 --threads 4] [--port 8791]

Builds a valid managed solution zip of about --size-mib MiB (a corpus solution plus one large stored
web resource of pseudo-random bytes, the same bytes on every run), starts gunicorn on the database
with the Dockerfile's worker model, warms every worker with ordinary requests, then POSTs the zip
to /api/v1/versions/ (multipart, streamed from disk by curl in a second process, a seeded maker's
token with the request scope). Reads VmHWM (peak RSS) and VmRSS of every gunicorn worker from
/proc before and after, and prints the growth of the worker that served the upload.

The first run registers the solution and stores the version (201); later runs on the same database
send the same bytes and are answered "identical" (200) after the same streaming, hashing and
package checks. Never pass/fail.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import bench_load  # noqa: E402
import scale_seed  # noqa: E402

CORPUS_ZIP = REPO / "tests" / "fixtures" / "corpus" / "solutions" / "Contoso_sample_1_0_0_1_managed.zip"
MIB = 1024 * 1024


def build_package(path: Path, size_mib: int) -> Path:
    """The corpus zip plus WebResources/bench_payload.bin, stored (not deflated), size_mib MiB."""
    rng = random.Random(300)
    with zipfile.ZipFile(CORPUS_ZIP) as original, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info in original.infolist():
            target.writestr(info, original.read(info.filename))
        entry = zipfile.ZipInfo("WebResources/bench_payload.bin")
        entry.compress_type = zipfile.ZIP_STORED
        with target.open(entry, "w", force_zip64=True) as payload:
            for _ in range(size_mib):
                payload.write(rng.randbytes(MIB))
    return path


def memory_kib(pid: int) -> dict[str, int]:
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                values[name] = int(rest.split()[0])
    return values


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return sorted(int(pid) for pid in children)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--pg", default=scale_seed.DEFAULT_PG)
    parser.add_argument("--size-mib", type=int, default=300)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed")

    bench_load.prepare_static(database=args.database, pg=args.pg)
    scale_seed.configure_django(database=args.database, pg=args.pg)
    from django.conf import settings

    from alm_portal.accounts.models import User
    from alm_portal.accounts.services import api_token_create
    from alm_portal.audit.context import AuditContext

    maker = User.objects.get(username="maker-000")
    team_id = maker.teams.values_list("pk", flat=True).first()
    _, token = api_token_create(
        user=maker,
        scopes=["read", "request"],
        context=AuditContext.system(),
        name=f"bench-upload-{time.time_ns()}",
        days=1,
    )
    from django.db import connection

    connection.close()

    workdir = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    try:
        started = time.perf_counter()
        package = build_package(workdir / "bench_upload.zip", args.size_mib)
        size = package.stat().st_size
        print(f"package: {size / MIB:.1f} MiB built in {time.perf_counter() - started:.1f} s", flush=True)
        digest = hashlib.sha256(package.read_bytes()).hexdigest() if size < 2**31 else ""

        server = bench_load.start_gunicorn(
            database=args.database, pg=args.pg, port=args.port, workers=args.workers, threads=args.threads
        )
        try:
            master = server.pid
            auth = f"Authorization: Bearer {token}"
            base = f"http://127.0.0.1:{args.port}"
            # Warm every worker (imports, connections): more requests than worker threads, in parallel.
            warm = [
                subprocess.Popen(
                    ["curl", "-s", "-o", "/dev/null", "-H", auth, f"{base}/api/v1/versions/?page={n % 5 + 1}"]
                )
                for n in range(args.workers * args.threads * 3)
            ]
            for process in warm:
                process.wait()
            time.sleep(1)
            pids = worker_pids(master)
            before = {pid: memory_kib(pid) for pid in pids}
            started = time.perf_counter()
            done = subprocess.run(
                [
                    "curl",
                    "-s",
                    "-o",
                    str(workdir / "response.json"),
                    "-w",
                    "%{http_code}",
                    "-H",
                    auth,
                    "-F",
                    f"file=@{package};type=application/zip",
                    "-F",
                    f"team={team_id}",
                    "-F",
                    "release_notes=bench upload",
                    f"{base}/api/v1/versions/",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            elapsed = time.perf_counter() - started
            after = {pid: memory_kib(pid) for pid in pids}
        finally:
            bench_load.stop(server)
        body = (workdir / "response.json").read_text()
        status = done.stdout.strip()
        try:
            response = json.loads(body)
        except json.JSONDecodeError:
            response = {"raw": body[:500]}
        stored = (
            response.get("managed", {}).get("sha256")
            if isinstance(response.get("managed"), dict)
            else response.get("managed_sha256")
        )

        print()
        print(f"Machine: {bench_load.machine()}")
        print(
            f"gunicorn {args.workers} workers x {args.threads} threads, FILE_UPLOAD_MAX_MEMORY_SIZE="
            f"{settings.FILE_UPLOAD_MAX_MEMORY_SIZE}, upload cap {settings.ALM_MAX_UPLOAD_BYTES} bytes"
        )
        print(
            f"upload: HTTP {status} in {elapsed:.1f} s ({size / MIB / elapsed:.1f} MiB/s); response: "
            f"{json.dumps(response.get('upload') or response.get('error') or response)[:300]}"
        )
        if digest and stored:
            print(f"sha256 stored {'equals' if stored == digest else 'DIFFERS FROM'} the file's ({digest[:16]}...)")
        print()
        print(
            f"| {'worker pid':>10} | {'VmHWM before MiB':>16} | {'VmHWM after MiB':>15} | {'peak growth MiB':>15} "
            f"| {'VmRSS after MiB':>15} |"
        )
        print(f"|{'-' * 12}|{'-' * 18}|{'-' * 17}|{'-' * 17}|{'-' * 17}|")
        for pid in pids:
            b, a = before[pid], after[pid]
            print(
                f"| {pid:>10} | {b['VmHWM'] / 1024:16.1f} | {a['VmHWM'] / 1024:15.1f} | "
                f"{(a['VmHWM'] - b['VmHWM']) / 1024:15.1f} | {a['VmRSS'] / 1024:15.1f} |"
            )
        growth = max((after[pid]["VmHWM"] - before[pid]["VmHWM"]) / 1024 for pid in pids)
        print(f"\nlargest worker peak growth during the {size / MIB:.0f} MiB upload: {growth:.1f} MiB (target < 50 MB)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
