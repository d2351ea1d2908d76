"""Cancel the duplicate open promotions already stored, before 0007 makes them impossible.

Back + resubmit, or the same POST sent twice, used to store identical open promotions (same kind,
version and stage); approving the stale one ran into already_installed. Each group keeps the one
furthest along (then the first requested); every other is cancelled by the system with reason
`superseded`, through the promotion state machine, so each cancellation has its own audit event in
the hash chain (deployments.workflow.promotions_supersede_duplicates).

The state machine works on the current models, so it is only called when a duplicate exists (never on
a new database), and only while the tables it reads already have every column today's models have. A
database that still holds duplicates from before this migration and is upgraded straight to a release
whose models added columns later (docs/upgrading.md) is refused with the duplicates named, changing
nothing: cancel them in the release that runs now, then upgrade. Going back only drops the index (0007):
cancelled promotions stay cancelled.
"""

from django.db import migrations

# The models the state machine reads while cancelling (select_related and the audit record).
READ_MODELS = (
    ("deployments", "Promotion"),
    ("deployments", "Stage"),
    ("solutions", "Solution"),
    ("solutions", "SolutionVersion"),
    ("environments", "Environment"),
)


def _missing_columns(schema_editor):
    """Columns today's models read that this database does not have yet."""
    from django.apps import apps as current

    connection = schema_editor.connection
    missing = []
    with connection.cursor() as cursor:
        for app_label, name in READ_MODELS:
            model = current.get_model(app_label, name)
            table = model._meta.db_table
            present = {column.name for column in connection.introspection.get_table_description(cursor, table)}
            missing += [f"{table}.{field.column}" for field in model._meta.concrete_fields if field.column not in present]
    return missing

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
    missing = _missing_columns(schema_editor)
    if missing:
        open_rows = historical.objects.filter(status__in=OPEN).order_by("pk")
        groups = {}
        for row in open_rows.values("pk", "kind", "version_id", "stage_id"):
            groups.setdefault((row["kind"], row["version_id"], row["stage_id"]), []).append(row["pk"])
        named = "; ".join(", ".join(map(str, ids)) for ids in groups.values() if len(ids) > 1)
        raise RuntimeError(
            "Open promotions that duplicate each other must be cancelled before this upgrade (duplicates, by "
            f"promotion id: {named}). Nothing was changed. Cancel all but one of each group in the release you "
            "run now (the promotion page or POST /api/v1/promotions/{id}/cancel/), then migrate again "
            f"(this release's models read columns the database gets later: {', '.join(missing[:5])})."
        )
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
