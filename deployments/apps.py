from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "deployments"

    def ready(self) -> None:
        # Registers this app's job kinds and handlers with the job engine, in every process.
        from deployments import tasks  # noqa: F401
