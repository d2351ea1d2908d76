"""What /metrics reports, read in a fixed number of queries whatever the size of the data.

Labels are bounded: job kind and status are enumerations, and `environment` is the name of a
registered environment (an admin-controlled, finite list). Nothing is labelled by user, solution,
promotion or job id.

Series (all gauges except the `_total` counter):
- alm_broker_up, alm_broker_queue_messages{queue}, alm_broker_unacked_messages
- alm_jobs{kind,status}, alm_jobs_needs_attention
- alm_dataverse_throttled_responses_total{environment}
- alm_drift_findings_open{environment}
- alm_audit_head_seq, alm_audit_last_verification_timestamp_seconds,
  alm_audit_last_verification_valid, alm_audit_last_verification_head_seq
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db.models import Count, Max, Q

from alm_portal.audit import selectors as audit_selectors
from alm_portal.audit.models import AuditEvent
from alm_portal.job_kinds import JobKind
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from environments.models import Environment

logger = logging.getLogger(__name__)

# kombu's Redis transport keeps a queue's messages of priority p in "<queue>\x06\x16<p>" (p > 0).
_REDIS_PRIORITY_SEPARATOR = "\x06\x16"
_REDIS_PRIORITY_STEPS = (0, 3, 6, 9)
_REDIS_UNACKED_KEY = "unacked"


@dataclass(frozen=True)
class Sample:
    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


@dataclass
class MetricFamily:
    name: str
    kind: str  # "gauge" or "counter"
    help: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append(Sample(self.name, float(value), tuple(sorted(labels.items()))))


@dataclass(frozen=True)
class BrokerDepth:
    reachable: bool
    queues: dict[str, int]
    unacked: int | None = None


def _queue_names() -> list[str]:
    """Celery's default queue (jobs) and the deliveries' own queue (settings.CELERY_TASK_QUEUES)."""
    default = getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")
    declared = [queue.name for queue in getattr(settings, "CELERY_TASK_QUEUES", ())]
    return [default, *(name for name in declared if name != default)]


def broker_depth() -> BrokerDepth:
    """Messages waiting in the broker (Redis lists, or the filesystem transport's folder)."""
    queues = _queue_names()
    if settings.REDIS_URL:
        try:
            import redis

            client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
            with client.pipeline(transaction=False) as pipe:
                for queue in queues:
                    for step in _REDIS_PRIORITY_STEPS:
                        pipe.llen(queue if step == 0 else f"{queue}{_REDIS_PRIORITY_SEPARATOR}{step}")
                pipe.hlen(_REDIS_UNACKED_KEY)
                lengths = pipe.execute()
        except Exception as exc:  # an unreachable broker is itself the finding
            logger.warning("metrics: broker not reachable: %s", type(exc).__name__)
            return BrokerDepth(reachable=False, queues={})
        per_queue = len(_REDIS_PRIORITY_STEPS)
        depth = {queue: sum(lengths[i * per_queue : (i + 1) * per_queue]) for i, queue in enumerate(queues)}
        return BrokerDepth(reachable=True, queues=depth, unacked=int(lengths[-1]))
    folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in", ""))  # type: ignore[arg-type]
    if not folder.is_dir():
        return BrokerDepth(reachable=False, queues={})
    # The filesystem transport names each message file "<timestamp>_<uuid>.<queue>.msg".
    depth = {queue: sum(1 for _ in folder.glob(f"*.{queue}.msg")) for queue in queues}
    return BrokerDepth(reachable=True, queues=depth)


def metric_families() -> list[MetricFamily]:
    """Every series /metrics exposes: four SQL queries plus one broker round trip."""
    families: list[MetricFamily] = []

    broker = broker_depth()
    up = MetricFamily("alm_broker_up", "gauge", "1 when the broker answered the metrics request.")
    up.add(1 if broker.reachable else 0)
    depth = MetricFamily("alm_broker_queue_messages", "gauge", "Messages waiting in the broker queue.")
    for queue, length in sorted(broker.queues.items()):
        depth.add(length, queue=queue)
    families += [up, depth]
    if broker.unacked is not None:
        unacked = MetricFamily(
            "alm_broker_unacked_messages", "gauge", "Messages a worker has taken but not acknowledged yet."
        )
        unacked.add(broker.unacked)
        families.append(unacked)

    counts = {
        (row["kind"], row["status"]): row["n"]
        for row in Job.objects.order_by().values("kind", "status").annotate(n=Count("id"))
    }
    jobs = MetricFamily("alm_jobs", "gauge", "Jobs by kind and status (every kind and status, zeros included).")
    for kind in JobKind.values:
        for status in JobStatus.values:
            jobs.add(counts.get((kind, status), 0), kind=kind, status=status)
    attention = MetricFamily(
        "alm_jobs_needs_attention", "gauge", "Jobs whose outcome is unknown until an admin resolves them."
    )
    attention.add(sum(n for (_kind, status), n in counts.items() if status == JobStatus.NEEDS_ATTENTION))
    families += [jobs, attention]

    throttled = MetricFamily(
        "alm_dataverse_throttled_responses_total",
        "counter",
        "HTTP 429 service-protection responses received from the environment, by any process.",
    )
    drift = MetricFamily("alm_drift_findings_open", "gauge", "Open drift findings of the environment.")
    environments = (
        Environment.objects.order_by("name")
        .annotate(open_drift=Count("drift_findings", filter=Q(drift_findings__resolved_at__isnull=True)))
        .values_list("name", "throttled_responses", "open_drift")
    )
    for name, throttled_count, open_drift in environments:
        throttled.add(throttled_count, environment=name)
        drift.add(open_drift, environment=name)
    families += [throttled, drift]

    head = MetricFamily("alm_audit_head_seq", "gauge", "Sequence number of the newest audit event.")
    head.add(AuditEvent.objects.aggregate(head=Max("seq"))["head"] or 0)
    families.append(head)
    families += _last_verification()
    return families


def _last_verification() -> list[MetricFamily]:
    event = audit_selectors.audit_last_verification()
    at = MetricFamily(
        "alm_audit_last_verification_timestamp_seconds",
        "gauge",
        "When the audit chain was last verified (Unix time; 0 = never).",
    )
    at.add(event.occurred_at.timestamp() if event is not None else 0)
    if event is None:
        return [at]
    valid = MetricFamily(
        "alm_audit_last_verification_valid", "gauge", "1 when the last verification found the chain intact, else 0."
    )
    valid.add(1 if event.outcome == "success" else 0)
    head_seq = MetricFamily(
        "alm_audit_last_verification_head_seq", "gauge", "Last sequence number the last verification found intact."
    )
    head_seq.add(int((event.after or {}).get("head_seq") or 0))
    return [at, valid, head_seq]
