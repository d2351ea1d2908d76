from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "deployments"

    def ready(self) -> None:
        # Imported once the models are loaded: the registrations import the workflow.
        from deployments import registrations

        registrations.register()
