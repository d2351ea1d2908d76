from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "deployments"

    def ready(self) -> None:
        # Imported once the models are loaded: the registrations import the workflow; the tasks module registers
        # this app's job kinds and handlers with the job engine, in every process.
        from deployments import registrations, tasks  # noqa: F401

        registrations.register()
