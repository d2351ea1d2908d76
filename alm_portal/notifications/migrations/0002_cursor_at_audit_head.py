"""Start the dispatcher at the audit head of the moment notifications are installed: history that
happened before anybody could subscribe is not replayed."""

from django.db import migrations
from django.db.models import Max


def create_cursor(apps, schema_editor):
    AuditEvent = apps.get_model("audit", "AuditEvent")
    NotificationCursor = apps.get_model("notifications", "NotificationCursor")
    head = AuditEvent.objects.aggregate(head=Max("seq"))["head"] or 0
    NotificationCursor.objects.get_or_create(pk=1, defaults={"last_seq": head})


def remove_cursor(apps, schema_editor):
    apps.get_model("notifications", "NotificationCursor").objects.filter(pk=1).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
        ("audit", "0002_append_only_triggers"),
    ]

    operations = [migrations.RunPython(create_cursor, remove_cursor)]
