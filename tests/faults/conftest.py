"""Fault matrix fixtures (issue 8): real Celery workers over Redis, PostgreSQL and the emulator.

Every case ends with `check_invariants` (tests/support/invariants.py). Workers poll imports quickly; the
test process plays beat (the dispatcher) with a short idle threshold, so a lost message is re-sent within
seconds instead of 30 s.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    contoso_fixture,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
)
from tests.support.private_services import PrivateRedis, point_celery_at


@pytest.fixture(name="worker_env")
def worker_env_fixture(emulator: Any) -> dict[str, str]:
    return {
        "ALM_DATAVERSE_CA_BUNDLE": str(emulator.ca_file),
        "ALM_ALLOW_LOOPBACK": "true",
        "ALM_IMPORT_POLL_SECONDS": "1",
        "ALM_IMPORT_POLL_MAX_SECONDS": "2",
        "ALM_IMPORT_BUSY_RETRY_SECONDS": "1",
    }


@pytest.fixture(name="fault_random")
def fault_random_fixture(request: pytest.FixtureRequest) -> random.Random:
    """Random choices of a case, reproducible: the seed is in the test's report (ALM_FAULT_SEED replays one)."""
    seed = int(os.environ.get("ALM_FAULT_SEED") or random.SystemRandom().randrange(1, 10**9))
    request.node.user_properties.append(("fault_seed", seed))
    print(f"fault seed: ALM_FAULT_SEED={seed}")
    return random.Random(seed)


@pytest.fixture(name="private_redis")
def private_redis_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A redis-server of this test only; this process and the workers it starts use it as the broker."""
    server = PrivateRedis(tmp_path_factory.mktemp("private-redis")).start()
    undo = point_celery_at(server.url(0))
    try:
        yield server
    finally:
        undo()
        server.stop()
