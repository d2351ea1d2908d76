"""Why a due pending job waits becomes a column (it was display text in progress_message that queries matched).

Jobs waiting for their environment's slot when this runs get no reason: their next claim, at most 5 s later,
sets it again.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='job',
            name='waiting_reason',
            field=models.CharField(blank=True, choices=[('solution_slot', "Waiting for the environment's current solution operation to finish.")], default='', max_length=20),
        ),
    ]
