"""Cancel the duplicate open promotions already stored, before 0007 makes them impossible.

Back + resubmit, or the same POST sent twice, used to store identical open promotions (same kind,
version and stage); approving the stale one ran into already_installed. Each group keeps the one
furthest along (then the first requested); every other is cancelled by the system with reason
`superseded`, through the promotion state machine, so each cancellation has its own audit event in
the hash chain (deployments.workflow.promotions_supersede_duplicates).

The state machine works on the current models, so it is only called when a duplicate exists (never on
a new database). Going back only drops the index (0007): cancelled promotions stay cancelled.
"""

from django.db import migrations

OPEN = ("pending_approval", "approved", "scheduled", "queued", "running")


def cancel_duplicates(apps, schema_editor):
    historical = apps.get_model("deployments", "Promotion")
    seen = set()
    duplicated = False
    for key in historical.objects.filter(status__in=OPEN).values_list("kind", "version_id", "stage_id"):
        if key in seen:
            duplicated = True
            break
        seen.add(key)
    if not duplicated:
        return
    from alm_portal.audit.context import AuditContext
    from deployments.workflow import promotions_supersede_duplicates

    cancelled = promotions_supersede_duplicates(context=AuditContext.system(request_id="migration-0006"))
    print(f"\n  cancelled {len(cancelled)} duplicate open promotion(s) as superseded: {cancelled}")


class Migration(migrations.Migration):
    dependencies = [
        ("deployments", "0006_stage_production_without_approval"),
        ("audit", "0003_index_last_verification"),
        ("accounts", "0002_sign_in_throttle"),
        ("solutions", "0003_version_order_index_matches_list_order"),
        ("environments", "0003_environment_throttled_responses"),
    ]

    operations = [migrations.RunPython(cancel_duplicates, migrations.RunPython.noop, elidable=True)]
