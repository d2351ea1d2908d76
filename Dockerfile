# One image for web, worker and beat; docker-compose.yml picks the command.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 ALM_MODE=production ALM_VAR_DIR=/var/lib/alm
WORKDIR /app
# The Git client (alm_portal/sourcecontrol) drives the git command line; ssh remotes need the ssh client.
RUN apt-get update && apt-get install --yes --no-install-recommends git openssh-client \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install -r requirements.txt && useradd --system --uid 1000 --home /app alm \
    && mkdir -p /var/lib/alm && chown alm /var/lib/alm
COPY --chown=alm . .
# collectstatic needs settings to load; these placeholders exist only for this build step.
RUN SECRET_KEY=build ALM_ENCRYPTION_KEY=bXVzdC1iZS0zMi11cmwtc2FmZS1iYXNlNjQtYnl0ZXM= ALM_TOKEN_PEPPER=build \
    ALM_AUDIT_CHECKPOINT_KEY=build ALLOWED_HOSTS=build ALM_ALLOW_LOOPBACK=false \
    python manage.py collectstatic --noinput --verbosity 0
USER alm
EXPOSE 8000
CMD ["gunicorn", "alm_portal.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4", "--access-logfile", "-"]
