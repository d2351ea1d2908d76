"""Dataverse environments, their credentials, health and inventory (built in the registry issue)."""
