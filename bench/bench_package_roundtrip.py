"""Round-trip a large solution package through the Dataverse client against the emulator; print memory and speed.

    .venv/bin/python bench/bench_package_roundtrip.py [--mb 100]

Starts its own emulator process (``python -m dataverse_emulator``), builds a valid unmanaged solution zip with an
incompressible payload of ``--mb`` MiB, then measures:

* upload: ``import_solution_async`` (JSON body with the zip as base64, streamed from the file);
* download: ``export_solution_async`` then ``download_solution_export_data`` (base64 decoded to a file while the
  response streams in; the emulator's time to build the export is printed separately);

each with tracemalloc's peak of Python allocations, and the process's peak RSS (ru_maxrss) at the end, next to
the raw stdlib speed of base64-encoding + SHA-256 of the same bytes (the CPU floor of the upload) and of
base64-decoding them (the floor of the download). Never part of the test suite.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import resource
import sys
import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from alm_portal.dataverse.auth import ClientCredentials  # noqa: E402
from alm_portal.dataverse.client import DataverseClient, Timeouts, _Base64FieldWriter, base64_json_body  # noqa: E402
from tests.support.emulator import start_emulator  # noqa: E402

CORPUS = REPO_ROOT / "tests" / "fixtures" / "corpus" / "solutions"
MIB = 1024 * 1024
T = TypeVar("T")


def build_package(path: Path, payload_mib: int) -> Path:
    source = CORPUS / "UpdateCreatedBy_1_0_0_1.zip"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info in original.infolist():
            target.writestr(info, original.read(info.filename))
        with target.open(zipfile.ZipInfo("WebResources/payload.bin"), "w") as payload:
            for _ in range(payload_mib):
                payload.write(os.urandom(MIB))
    return path


def measured(label: str, size: int, action: Callable[[], T]) -> T:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = action()
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"{label:<44} {elapsed:7.2f} s  {size / MIB / elapsed:8.1f} MB/s  tracemalloc peak {peak / MIB:7.2f} MiB")
    return result


def stdlib_floor(path: Path) -> None:
    data = path.read_bytes()
    size = len(data)
    started = time.perf_counter()
    encoded = base64.b64encode(data)
    hashlib.sha256(data).hexdigest()
    elapsed = time.perf_counter() - started
    print(f"{'stdlib b64encode + sha256 (all in memory)':<44} {elapsed:7.2f} s  {size / MIB / elapsed:8.1f} MB/s")
    started = time.perf_counter()
    base64.b64decode(encoded)
    elapsed = time.perf_counter() - started
    print(f"{'stdlib b64decode (all in memory)':<44} {elapsed:7.2f} s  {size / MIB / elapsed:8.1f} MB/s")


def client_side_only(path: Path) -> None:
    """The client's own share: the streamed encoder and decoder without the network or the emulator."""
    size = path.stat().st_size
    body = base64_json_body({"PublishWorkflows": True}, "CustomizationFile", path)
    started = time.perf_counter()
    produced = sum(len(chunk) for chunk in body)
    elapsed = time.perf_counter() - started
    print(f"{'client encoder alone (file → JSON chunks)':<44} {elapsed:7.2f} s  {size / MIB / elapsed:8.1f} MB/s")
    document = b'{"ExportSolutionFile":"' + base64.b64encode(path.read_bytes()) + b'"}'
    with open(os.devnull, "wb") as sink:
        writer = _Base64FieldWriter("ExportSolutionFile", sink)
        started = time.perf_counter()
        for offset in range(0, len(document), MIB):
            writer.feed(document[offset : offset + MIB])
        writer.finish()
        elapsed = time.perf_counter() - started
    print(f"{'client decoder alone (1 MiB chunks → file)':<44} {elapsed:7.2f} s  {size / MIB / elapsed:8.1f} MB/s")
    assert produced == len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="payload size in MiB (default 100)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-roundtrip-") as scratch:
        work = Path(scratch)
        package = build_package(work / "big.zip", args.mb)
        size = package.stat().st_size
        print(f"package: {size / MIB:.1f} MiB ({size} bytes); python {sys.version.split()[0]}")
        with start_emulator(work / "emulator") as server:
            org = server.new_org()
            client = DataverseClient(
                org.url,
                credentials=ClientCredentials(org.authority, org.client_id, org.client_secret),
                ca_bundle=str(server.ca_file),
                timeouts=Timeouts(transfer_read=1800),
            )
            client.who_am_i()  # token + TLS session outside the measurements
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            handle = measured(
                "upload: import_solution_async (streamed)", size, lambda: client.import_solution_async(package)
            )
            operation = client.wait_for_async_operation(handle.async_operation_id, timeout=600, initial_interval=0.5)
            assert operation.succeeded, operation
            export = client.export_solution_async("UpdateCreatedBy", managed=False)
            started = time.perf_counter()
            assert client.wait_for_async_operation(
                export.async_operation_id, timeout=600, initial_interval=0.5
            ).succeeded
            print(f"{'(emulator builds the export: async job)':<44} {time.perf_counter() - started:7.2f} s")
            exported = measured(
                "download: download_solution_export_data",
                size,
                lambda: client.download_solution_export_data(export.export_job_id, work / "exported.zip"),
            )
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            assert handle.package_sha256 == hashlib.sha256(package.read_bytes()).hexdigest()
            print(f"exported: {exported.size / MIB:.1f} MiB, sha256 {exported.sha256[:16]}…")
            print(f"ru_maxrss: {rss_before / 1024:.1f} MiB before the round trip, {rss_after / 1024:.1f} MiB after")
        client_side_only(package)
        stdlib_floor(package)
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"ru_maxrss after the stdlib in-memory comparison: {peak_rss:.1f} MiB")


if __name__ == "__main__":
    main()
