from django.apps import AppConfig


class IdempotencyConfig(AppConfig):
    name = "alm_portal.idempotency"
    label = "idempotency"
    verbose_name = "API idempotency keys"
    default_auto_field = "django.db.models.BigAutoField"
