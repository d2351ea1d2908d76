from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "alm_portal.jobs"
    label = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the engine's own tasks in every process: the engine publishes run_job by its name
        # (alm_portal/jobs/services/publishing.py) instead of importing this module, which imports the engine.
        from alm_portal.jobs import tasks  # noqa: F401
