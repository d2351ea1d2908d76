"""States of an idempotency record."""

from django.db import models


class RecordState(models.TextChoices):
    # Claimed by the INSERT that won the unique constraint; the request is still being handled.
    IN_FLIGHT = "in_flight", "In flight"
    # The first response is stored and replayed for the same key and body.
    COMPLETED = "completed", "Completed"
