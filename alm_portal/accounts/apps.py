from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "alm_portal.accounts"
    label = "accounts"
    verbose_name = "Accounts, teams and API tokens"

    def ready(self) -> None:
        from alm_portal.accounts import signals  # noqa: F401  (connects the sign-in audit receivers)
