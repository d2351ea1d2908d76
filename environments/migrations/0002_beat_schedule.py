"""Beat entries: health checks every 15 minutes, inventory syncs every hour (DatabaseScheduler).

Each entry only queues one job per active environment (environments.tasks); admins may change the
intervals in the Django admin, and re-running this migration keeps their changes.
"""

from django.db import migrations

SCHEDULE = (
    ("environments: health checks", "environments.schedule_health_checks", 15),
    ("environments: inventory syncs", "environments.schedule_inventory_syncs", 60),
)


def add_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, minutes in SCHEDULE:
        interval, _ = IntervalSchedule.objects.get_or_create(every=minutes, period="minutes")
        PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": interval, "enabled": True})


def remove_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, _, _ in SCHEDULE]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("environments", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(add_schedule, remove_schedule)]
