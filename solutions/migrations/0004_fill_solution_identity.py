"""Fill the publisher and display name of solutions registered by name before their first package did.

Registration by name (the demo, the API, the page) left them empty, and exporting a version never
filled them, so pages showed publisher "—" and the API empty fields while every manifest named the
publisher. Each filled solution gets its `solution.identity_filled` audit event, through the registry
service (solutions.services.solutions_fill_identity), which reads the oldest version's manifest.

The service works on the current models, so it is only called when such a solution has a version.
Going back changes nothing: the values stay filled.
"""

from django.db import migrations
from django.db.models import F, Q


def fill(apps, schema_editor):
    historical = apps.get_model("solutions", "Solution")
    unfilled = historical.objects.filter(
        Q(publisher_unique_name="") | Q(publisher_prefix="") | Q(display_name="") | Q(display_name=F("unique_name"))
    )
    if not unfilled.filter(versions__isnull=False).exists():
        return
    from alm_portal.audit.context import AuditContext
    from solutions.services import solutions_fill_identity

    filled = solutions_fill_identity(context=AuditContext.system(request_id="migration-solutions-0004"))
    print(f"\n  filled the publisher and display name of {len(filled)} solution(s) from their packages")


class Migration(migrations.Migration):
    dependencies = [
        ("solutions", "0003_version_order_index_matches_list_order"),
        ("audit", "0003_index_last_verification"),
        ("accounts", "0002_sign_in_throttle"),
    ]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop, elidable=True)]
