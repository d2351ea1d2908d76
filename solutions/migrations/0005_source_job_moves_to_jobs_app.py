"""SolutionVersion.source_job points at the Job model in its new app (jobs 0001); the column is unchanged."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0001_initial'),
        ('solutions', '0004_fill_solution_identity'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            # The table, its indexes and its foreign keys stay as they are: only the model's app changes.
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name='solutionversion',
                    name='source_job',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='jobs.job'),
                ),
            ],
        ),
    ]
