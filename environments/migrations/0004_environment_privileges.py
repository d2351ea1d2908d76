from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("environments", "0003_environment_throttled_responses"),
    ]

    operations = [
        migrations.AddField(
            model_name="environment",
            name="privileges",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
