"""The Job model leaves this app for alm_portal.jobs (jobs 0001): the promotions' job links follow it and the
model leaves this app's state. The table (deployments_job) and every row stay where they are.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('deployments', '0008_one_open_promotion_per_version_and_stage'),
        ('jobs', '0001_initial'),
        ('solutions', '0005_source_job_moves_to_jobs_app'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            # The table, its indexes and its foreign keys stay as they are: only the model's app changes.
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name='promotion',
                    name='preflight_job',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='jobs.job'),
                ),
                migrations.AlterField(
                    model_name='promotion',
                    name='run_job',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='jobs.job'),
                ),
                migrations.DeleteModel(
                    name='Job',
                ),
            ],
        ),
    ]
