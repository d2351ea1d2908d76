"""Chaos soak, full form (issue 8): 200 promotions across 10 emulator environments on 2 workers while workers
are killed and replaced, a private Redis restarts and environments throttle; ends within its time bound with
every invariant checked (tests/support/invariants.py) and prints the counts. Exit status 1 when an invariant
fails or the promotions do not finish within the bound.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<an empty database> \\
        .venv/bin/python bench/chaos_soak.py [--promotions 200] [--environments 10] [--workers 2] \\
        [--seconds 900] [--seed N] [--workdir DIR]

The database is migrated first; the soak creates its own team, pipeline and environments. It starts its own
emulator and its own redis-server (never the machine's), both in the work directory, with the workers'
logs. The suite runs a short form of the same code (tests/faults/test_chaos_soak.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--promotions", type=int, default=200)
    parser.add_argument("--environments", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=900.0, help="the time bound")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        parser.error("set DATABASE_URL to an empty PostgreSQL database (it is migrated)")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="alm-chaos-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alm_portal.settings")
    os.environ["ALM_MODE"] = "test"  # as the workers run (tests/support/worker.py)
    os.environ["ALM_ARTIFACT_DIR"] = str(workdir / "artifacts")  # artifacts and audit checkpoints of this run
    # Redis settings for the Celery app; the soak points it at its private redis-server before publishing.
    os.environ["REDIS_URL"] = "redis://127.0.0.1:9/0"

    import django

    django.setup()
    from django.core.management import call_command

    from tests.support.chaos import run_soak
    from tests.support.emulator import start_emulator

    call_command("migrate", "--noinput", verbosity=0)
    print(f"work directory: {workdir}")
    with start_emulator(workdir / "emulator") as emulator:
        try:
            report = run_soak(
                emulator=emulator,
                workdir=workdir,
                promotions=args.promotions,
                environments=args.environments,
                workers=args.workers,
                seconds=args.seconds,
                seed=args.seed,
                worker_env={"DATABASE_URL": os.environ["DATABASE_URL"]},
            )
        except AssertionError as failure:
            print(f"chaos soak FAILED: {failure}")
            return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
