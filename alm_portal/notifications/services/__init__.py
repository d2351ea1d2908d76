"""Use cases of notifications, the only code that writes this app's rows.

- endpoints: webhook endpoints (create, update, delete, disable, test ping) and email opt-ins;
- dispatch: audit events → delivery rows, behind the cursor;
- delivery: one attempt of one delivery (webhook or email), backoff, the sweep.
"""

from alm_portal.notifications.services.delivery import (
    AttemptOutcome,
    describe_failure,
    email_delivery_attempt,
    notifications_deliver_due,
    notifications_publish_due,
    retry_delay,
    retry_window,
    webhook_delivery_attempt,
)
from alm_portal.notifications.services.dispatch import (
    DispatchReport,
    cursor_position,
    notifications_dispatch,
    notifies,
)
from alm_portal.notifications.services.endpoints import (
    email_subscription_set,
    endpoint_facts,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_disable,
    webhook_endpoint_test,
    webhook_endpoint_update,
)

__all__ = [
    "AttemptOutcome",
    "DispatchReport",
    "cursor_position",
    "describe_failure",
    "email_delivery_attempt",
    "email_subscription_set",
    "endpoint_facts",
    "notifications_deliver_due",
    "notifications_dispatch",
    "notifications_publish_due",
    "notifies",
    "retry_delay",
    "retry_window",
    "webhook_delivery_attempt",
    "webhook_endpoint_create",
    "webhook_endpoint_delete",
    "webhook_endpoint_disable",
    "webhook_endpoint_test",
    "webhook_endpoint_update",
]
