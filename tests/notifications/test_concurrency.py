"""Two dispatchers at once, while events keep arriving, on PostgreSQL: every event is turned into
exactly one delivery per subscriber, none skipped, none twice (the unique constraint would raise)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from alm_portal.audit.context import AuditContext, ObjectRef
from alm_portal.audit.models import AuditEvent
from alm_portal.audit.services import record
from alm_portal.notifications import selectors, services
from alm_portal.notifications.models import EmailDelivery, WebhookDelivery

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

EVENTS = 240


def test_two_dispatchers_never_skip_or_duplicate(admin_context, make_user):
    hook = services.webhook_endpoint_create(
        name="all-ticks", url="https://hooks.example.com/alm", events=["demo."], secret="x" * 24, context=admin_context
    )
    auditor = make_user("auditor", "auditor")
    auditor.email = "auditor@example.com"
    auditor.save(update_fields=["email"])
    services.email_subscription_set(user=auditor, events=["demo.tick"], context=admin_context)

    start = threading.Barrier(3)
    writing = threading.Event()
    writing.set()
    errors: list[BaseException] = []
    runs: list[int] = []

    def writer() -> None:
        try:
            start.wait()
            for n in range(EVENTS):
                with transaction.atomic():
                    record(
                        context=AuditContext.system(),
                        action="demo.tick",
                        target=ObjectRef(type="demo.clock", id=str(n), repr=f"tick {n}"),
                    )
        except BaseException as exc:
            errors.append(exc)
        finally:
            writing.clear()
            connection.close()

    def dispatcher() -> None:
        try:
            start.wait()
            while True:
                still_writing = writing.is_set()
                report = services.notifications_dispatch(batch_size=7, max_batches=3)
                runs.append(report.batches)
                if not still_writing and services.cursor_position() >= selectors.audit_head_seq():
                    break
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=dispatcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

    ticks = list(AuditEvent.objects.filter(action="demo.tick").order_by("seq").values_list("seq", flat=True))
    assert len(ticks) == EVENTS
    hook_seqs = list(
        WebhookDelivery.objects.filter(endpoint=hook).order_by("audit_seq").values_list("audit_seq", flat=True)
    )
    assert hook_seqs == ticks
    mail_seqs = list(EmailDelivery.objects.order_by("audit_seq").values_list("audit_seq", flat=True))
    assert mail_seqs == ticks
    assert services.cursor_position() == selectors.audit_head_seq()
    assert len(runs) > 2  # both dispatchers really ran, interleaved with the writer
