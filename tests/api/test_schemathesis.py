"""Schemathesis against /api/schema/, with an admin's and a maker's token (issue 6 "must show").

Every operation of the schema gets a few generated requests per persona (bounded so that the whole file
stays around a minute on two cores): no answer may be a 5xx, and every status code, content type and body
must be the ones the schema declares for that operation.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 3
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


# Response-body mismatches in serializers this suite does not own, found by this test and reported to
# their owners: a failure that concerns only these schema locations is listed, not failed on. Every other
# check (no 5xx, status codes, content types) still applies to those operations, and any other mismatch fails.
KNOWN_SCHEMA_GAPS: dict[str, str] = {}
_SCHEMA_AT = re.compile(r"Schema at (\S+?):")


def only_known_gaps(text: str) -> bool:
    locations = set(_SCHEMA_AT.findall(text))
    other_kinds = re.findall(r"- (ST\d+) ", text)
    return bool(locations) and locations <= set(KNOWN_SCHEMA_GAPS) and set(other_kinds) <= {"ST108"}


@pytest.fixture
def offline_targets(monkeypatch):
    """The world's environments do not exist: the rollback plan uses the inventory, the verification runs
    nowhere; nothing here may reach outside the machine."""
    monkeypatch.setattr("deployments.rollback._plan_client", lambda promotion, factory: None)


@pytest.fixture
def connection_kept_open():
    """Requests go through the real WSGI handler, which closes the database connection when a request
    ends; inside the test's transaction it must stay open (Django's test client does the same)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.parametrize("persona", ["admin", "maker"])
def test_every_operation_answers_as_the_schema_says(api_world, offline_targets, connection_kept_open, persona):
    from alm_portal.wsgi import application

    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    headers = {"Authorization": f"Bearer {api_world.tokens[persona]}"}
    failures: dict[str, str] = {}
    operations = 0

    def checked(operation):
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        return check

    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        try:
            checked(operation)()
        except (
            Exception,
            BaseExceptionGroup,
        ) as failure:  # collect every operation's failure, then report them together
            text = "\n".join(str(part) for part in getattr(failure, "exceptions", [failure])) + "\n" + str(failure)
            if not only_known_gaps(text):
                failures[operation.label] = text[:3000]
    assert operations > 50
    assert failures == {}, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
