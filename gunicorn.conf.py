"""gunicorn reads this file from its working directory by default (the repository root for `make run`,
/app in the image), so every way the portal is served uses it: the access log never holds a token or
an authorization code (alm_portal/gunicorn_logging.py, docs/security.md)."""

logger_class = "alm_portal.gunicorn_logging.RedactingAccessLogger"
