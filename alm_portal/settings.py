"""Placeholder settings, replaced by the real settings module in the foundation commit."""
SECRET_KEY = "placeholder"
INSTALLED_APPS: list[str] = []
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
