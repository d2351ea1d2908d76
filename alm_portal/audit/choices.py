"""Closed vocabularies of the audit log; the values are part of the hashed canonical form."""

from django.db import models


class ActorKind(models.TextChoices):
    USER = "user", "User"
    API_TOKEN = "api_token", "API token"
    WORKER = "worker", "Worker"
    SYSTEM = "system", "System"


class Outcome(models.TextChoices):
    SUCCESS = "success", "Success"
    DENIED = "denied", "Denied"
    FAILED = "failed", "Failed"
