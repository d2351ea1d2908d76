"""Many writers, one chain: the advisory lock serialises seq assignment (PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from alm_portal.audit.services import audit_verify, record

from .support import requires_postgres

WRITERS = 20
EVENTS_EACH = 50


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_writers_make_one_gapless_chain():
    start = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            start.wait()
            for number in range(EVENTS_EACH):
                with transaction.atomic():
                    record(
                        context=AuditContext.worker(f"writer-{writer}"),
                        action="test.concurrent",
                        after={"writer": writer, "number": number},
                    )
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(range(1, 1001))
    # Each writer's own events keep their order in the chain.
    for writer in range(WRITERS):
        numbers = [
            after["number"]
            for after in AuditEvent.objects.filter(request_id=f"writer-{writer}")
            .order_by("seq")
            .values_list("after", flat=True)
        ]
        assert numbers == list(range(EVENTS_EACH))
    result = audit_verify()
    assert (result.ok, result.checked, result.head_seq) == (True, 1000, 1000)
