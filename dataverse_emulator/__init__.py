"""A local HTTPS imitation of Dataverse (Web API) and Entra ID for tests, CI and the demo.

Run it with ``python -m dataverse_emulator``; see README.md in this package for the routes.
It never imports the portal (alm_portal, environments, solutions, deployments): an
import-linter contract in pyproject.toml checks that.
"""

API_VERSION = "v9.2"
