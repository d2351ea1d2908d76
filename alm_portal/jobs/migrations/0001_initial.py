"""The Job model moves here from the deployments app (deployments 0009 removes it there).

Only the migration state changes: the table keeps its name (deployments_job), its rows, indexes and
constraints, and the foreign keys that point at it; no row is read or written.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        # The last migration that changed the Job model while it lived in deployments: later deployments
        # migrations can be undone and redone (as tests of their data migrations do) without taking the job
        # table's later columns with them.
        ('deployments', '0003_job_kind_audit_verify'),
        ('environments', '0004_environment_privileges'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            # The table, its indexes and its foreign keys stay as they are: only the model's app changes.
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='Job',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(max_length=20)),
                        ('status', models.CharField(choices=[('pending', 'Pending'), ('claimed', 'Claimed'), ('submitting', 'Submitting'), ('polling', 'Polling'), ('finishing', 'Finishing'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('needs_attention', 'Needs attention'), ('cancelled', 'Cancelled')], default='pending', max_length=20)),
                        ('uses_solution_slot', models.BooleanField(default=False)),
                        ('params', models.JSONField(blank=True, default=dict)),
                        ('result', models.JSONField(blank=True, default=dict)),
                        ('step', models.CharField(blank=True, help_text='Where a resumable handler is.', max_length=40)),
                        ('progress', models.PositiveSmallIntegerField(default=0)),
                        ('progress_message', models.CharField(blank=True, max_length=300)),
                        ('error_code', models.CharField(blank=True, max_length=64)),
                        ('error_message', models.TextField(blank=True)),
                        ('not_before', models.DateTimeField(blank=True, null=True)),
                        ('lease_owner', models.CharField(blank=True, max_length=120)),
                        ('lease_expires_at', models.DateTimeField(blank=True, null=True)),
                        ('attempts', models.PositiveIntegerField(default=0)),
                        ('async_operation_id', models.CharField(blank=True, max_length=64)),
                        ('import_job_id', models.CharField(blank=True, max_length=64)),
                        ('package_sha256', models.CharField(blank=True, max_length=64)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('request_id', models.CharField(blank=True, max_length=64)),
                        ('claimed_at', models.DateTimeField(blank=True, null=True)),
                        ('submitted_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('environment', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='jobs', to='environments.environment')),
                    ],
                    options={
                        'db_table': 'deployments_job',
                        'ordering': ['-created_at', '-id'],
                        'indexes': [models.Index(fields=['status', 'not_before'], name='job_dispatch_idx'), models.Index(fields=['kind', 'status'], name='job_kind_status_idx')],
                        'constraints': [models.UniqueConstraint(condition=models.Q(('status__in', ('claimed', 'submitting', 'polling', 'finishing')), ('uses_solution_slot', True)), fields=('environment',), name='one_active_solution_operation_per_environment')],
                    },
                ),
            ],
        ),
    ]
