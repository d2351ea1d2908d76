from django.apps import AppConfig


class LimitsConfig(AppConfig):
    name = "alm_portal.limits"
    label = "limits"
    verbose_name = "Throttles and concurrency limits"
    default_auto_field = "django.db.models.BigAutoField"
