"""``--seed demo``: the emulator side of the demo (idempotent).

Lays out one tenant with five orgs (contoso-dev with unmanaged corpus solutions installed,
contoso-test and contoso-prod empty of custom solutions, contoso-build empty (where the portal builds managed
packages from source), fabrikam-dev with one unmanaged solution),
each at the root of its own origin, one client credential per org, an SSO client for the portal's sign-in,
and the six demo identities plus one without any app role. Client ids and object ids are fixed; secrets are
generated once and kept in the state. The deploying identities are System Administrators, except
fabrikam-dev's, which holds a custom role without prvReadPublisher (an ExportSolution privilege), so the
portal has a missing privilege to catch. A demo laid out by an older emulator (organisations under a path,
no roles) is brought up to date. Every start rewrites ``demo-credentials.json`` next to the state file,
because the URLs contain this run's ports.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from . import security

if TYPE_CHECKING:
    from .app import Emulator

DEMO_TENANT_ID = "5b0b0d7e-2f43-4c1e-9a4e-0d3e7c2a9f10"
DEMO_TENANT_NAME = "contoso.example"
DEMO_SOLUTIONS = Path(__file__).parent / "demo_solutions"

# org name -> (client id of its credential, unmanaged solution zips to install)
DEMO_ORGS: dict[str, tuple[str, list[str]]] = {
    "contoso-dev": (
        "a1d3c5e7-0b2d-4f60-8a1c-3e5f7a9b1c01",
        [
            "IncidentReporting_1_0_0_4.zip",
            "PodcastCopilotSolution_1_0_0_5.zip",
            "flow-excel-groupbyemail-notification-example.v1_0_0_7.zip",
            "UpdateCreatedBy_1_0_0_1.zip",
        ],
    ),
    "contoso-test": ("a1d3c5e7-0b2d-4f60-8a1c-3e5f7a9b1c02", []),
    "contoso-prod": ("a1d3c5e7-0b2d-4f60-8a1c-3e5f7a9b1c03", []),
    "fabrikam-dev": ("a1d3c5e7-0b2d-4f60-8a1c-3e5f7a9b1c04", ["TravelRequestApprovalApp_1_0_0_6.solution.zip"]),
    # Where the portal builds managed packages from source (the ALM Accelerator's build environment): empty.
    "contoso-build": ("a1d3c5e7-0b2d-4f60-8a1c-3e5f7a9b1c05", []),
}
# The demo's deploying identity that lacks a privilege: its org, its role and the privilege it lacks.
LIMITED_ORG = "fabrikam-dev"
LIMITED_ROLE = "Fabrikam solution maker"
LIMITED_ROLE_LACKS = ("prvReadPublisher", "prvWriteOrganization")
SSO_CLIENT_ID = "a1d3c5e7-0b2d-4f60-8a1c-3e5f7a9b1c10"
DEFAULT_REDIRECT_URIS = [
    "http://127.0.0.1:8000/accounts/entra/callback/",
    "http://localhost:8000/accounts/entra/callback/",
]
# docs/demo.md §3: six identities with fixed object ids and app roles, plus one without any app role.
DEMO_IDENTITIES = [
    ("admin", "Ada Admin", "0a000000-0000-4000-8000-000000000001", ["ALM.Admin"]),
    ("maker", "Max Maker", "0a000000-0000-4000-8000-000000000002", ["ALM.Maker"]),
    ("approver", "April Approver", "0a000000-0000-4000-8000-000000000003", ["ALM.Approver"]),
    ("approver2", "Bo Approver", "0a000000-0000-4000-8000-000000000004", ["ALM.Approver"]),
    ("auditor", "Audrey Auditor", "0a000000-0000-4000-8000-000000000005", ["ALM.Auditor"]),
    ("maker2", "Mia Maker", "0a000000-0000-4000-8000-000000000006", ["ALM.Maker"]),
    ("outsider", "Otto Outsider", "0a000000-0000-4000-8000-000000000007", []),
]


def seed_demo(app: Emulator, redirect_uris: list[str] | None = None) -> Path:
    """Create the demo layout if it is not there yet; always write demo-credentials.json."""
    admin = app.admin
    store = app.store
    with store.lock:
        if "demo" not in store.data.get("seeded", []):
            admin.create_tenant(DEMO_TENANT_ID, DEMO_TENANT_NAME)
            for name, display, object_id, roles in DEMO_IDENTITIES:
                admin.add_identity(
                    DEMO_TENANT_ID,
                    {
                        "username": f"{name}@{DEMO_TENANT_NAME}",
                        "display_name": display,
                        "object_id": object_id,
                        "roles": roles,
                    },
                )
            for org_name, (client_id, zips) in DEMO_ORGS.items():
                if store.org(org_name) is None:
                    admin.create_org({"name": org_name, "tenant_id": DEMO_TENANT_ID})
                admin.register_client(
                    {
                        "tenant_id": DEMO_TENANT_ID,
                        "client_id": client_id,
                        "display_name": f"ALM Portal ({org_name})",
                        "orgs": [org_name],
                    }
                )
                org = store.org(org_name)
                assert org is not None
                for zip_name in zips:
                    data = (DEMO_SOLUTIONS / zip_name).read_bytes()
                    admin.install(org, {"file": base64.b64encode(data).decode("ascii")})
            admin.register_client(
                {
                    "tenant_id": DEMO_TENANT_ID,
                    "client_id": SSO_CLIENT_ID,
                    "display_name": "ALM Portal sign-in",
                    "redirect_uris": redirect_uris or DEFAULT_REDIRECT_URIS,
                }
            )
            store.data.setdefault("seeded", []).append("demo")
        elif redirect_uris:
            tenant = store.tenant(DEMO_TENANT_ID)
            assert tenant is not None
            tenant["clients"][SSO_CLIENT_ID]["redirect_uris"] = list(redirect_uris)
        _bring_up_to_date(app)
        store.save()
        return write_demo_credentials(app)


def _bring_up_to_date(app: Emulator) -> None:
    """Organisations at their own origin (a demo laid out under paths moves, once), and the limited role."""
    store = app.store
    seeded = store.data.setdefault("seeded", [])
    if "demo-origins" not in seeded:
        if app.listeners is not None:
            for org_name in DEMO_ORGS:
                org = store.org(org_name)
                if org is not None and not org.get("port"):
                    org["port"] = app.open_org_port(org_name)
        seeded.append("demo-origins")
    if "demo-privileges" not in seeded:
        org = store.org(LIMITED_ORG)
        if org is not None:
            client_id = DEMO_ORGS[LIMITED_ORG][0]
            user = next((u for u in org["systemusers"].values() if u.get("applicationid") == client_id), None)
            if security.find_role(org, LIMITED_ROLE) is None:
                granted = security.BUILT_IN_ROLES[security.SYSTEM_ADMINISTRATOR] - set(LIMITED_ROLE_LACKS)
                security.add_role(org, LIMITED_ROLE, {name: "Global" for name in sorted(granted)})
            if user is not None:
                security.set_user_roles(org, user, [LIMITED_ROLE])
        seeded.append("demo-privileges")


def write_demo_credentials(app: Emulator) -> Path:
    """``demo-credentials.json``: what the portal's own demo seeding reads (URLs of this run)."""
    store = app.store
    tenant = store.tenant(DEMO_TENANT_ID)
    assert tenant is not None
    credentials = {
        "tenant_id": DEMO_TENANT_ID,
        "tenant_name": tenant["name"],
        "authority": app.entra.authority(DEMO_TENANT_ID),
        "base_url": app.base_url,
        "idp_url": app.idp_url,
        "ca_file": str(app.ca_file),
        "orgs": {
            name: {
                "url": app.org_url(name),
                "client_id": client_id,
                "client_secret": tenant["clients"][client_id]["secret"],
            }
            for name, (client_id, _zips) in DEMO_ORGS.items()
        },
        "sso_client": {
            "client_id": SSO_CLIENT_ID,
            "client_secret": tenant["clients"][SSO_CLIENT_ID]["secret"],
            "redirect_uris": tenant["clients"][SSO_CLIENT_ID]["redirect_uris"],
        },
        "identities": [
            {
                "username": identity["username"],
                "display_name": identity["display_name"],
                "object_id": identity["object_id"],
                "roles": identity["roles"],
            }
            for identity in tenant["identities"]
        ],
    }
    path = app.state_path.parent / "demo-credentials.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(credentials, indent=2), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path
