from django.apps import AppConfig


class EnvironmentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "environments"

    def ready(self) -> None:
        # Registers this app's job kinds and handlers with the job engine, in every process.
        from environments import tasks  # noqa: F401
