from django.apps import AppConfig


class SolutionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "solutions"

    def ready(self) -> None:
        # Registers this app's job kinds and handlers with the job engine, in every process.
        from solutions import tasks  # noqa: F401
