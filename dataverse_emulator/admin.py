"""The admin API under ``/_emulator/`` (JSON, no auth, loopback clients only). README.md lists every route.

It is how tests and the demo set the emulator up (tenants, clients, identities, orgs), misbehave it
(faults, durations, token revocation) and look inside (counters, state).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import TYPE_CHECKING, Any

from . import errors, faults, orgs, security, unconfirmed
from .errors import DataverseError
from .package import read_package
from .store import empty_state, new_id, now
from .wire import Request, Response

if TYPE_CHECKING:
    from .app import Emulator

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Admin:
    def __init__(self, app: Emulator) -> None:
        self.app = app
        self.store = app.store

    def handle(self, request: Request) -> Response:
        if request.client_ip not in LOOPBACK:
            return Response.json(403, {"error": "the admin API only answers loopback clients"})
        route = request.path.removeprefix("/_emulator").strip("/")
        try:
            body = request.json() if request.body else {}
            with self.store.lock:
                result = self._route(request.method, route, body or {}, request)
                if request.method != "GET":
                    self.store.save(orgs=self._touched_orgs(route, body or {}, result))
            if isinstance(result, Response):
                return result
            status = 201 if request.method == "POST" and route in ("orgs", "clients", "tenants") else 200
            return Response.json(status, result)
        except AdminError as exc:
            return Response.json(exc.status, {"error": exc.message})
        except DataverseError as exc:
            return Response.json(exc.status, exc.body())
        except (ValueError, KeyError, TypeError) as exc:
            return Response.json(400, {"error": f"{type(exc).__name__}: {exc}"})

    # ------------------------------------------------------------------------------------------
    def _route(self, method: str, route: str, body: dict[str, Any], request: Request) -> Any:
        parts = route.split("/") if route else []
        if method == "GET" and parts == ["health"]:
            return {
                "status": "ok",
                "base_url": self.app.base_url,
                "idp_url": self.app.idp_url,
                "ca_file": str(self.app.ca_file),
                "port": self.app.port,
                "idp_port": self.app.idp_port or self.app.port,
                "default_addressing": self.app.default_addressing,
                "org_ports": {
                    name: org["port"] for name, org in sorted(self.store.data["orgs"].items()) if org.get("port")
                },
            }
        if method == "GET" and parts == ["state"]:
            return self._public_state()
        if method == "POST" and parts == ["reset"]:
            return self.reset()
        if parts == ["settings"]:
            if method == "POST":
                self.store.data["settings"].update(_settings(body))
            return self.store.data["settings"]
        if parts == ["tenants"]:
            if method == "POST":
                return self.create_tenant(body.get("tenant_id"), body.get("name"))
            return [self._tenant_summary(t) for t in self.store.data["tenants"]]
        if len(parts) == 3 and parts[0] == "tenants" and parts[2] == "identities" and method == "POST":
            return self.add_identity(parts[1], body)
        if parts == ["clients"] and method == "POST":
            return self.register_client(body)
        if parts == ["tokens", "revoke"] and method == "POST":
            return {"token_generation": self.app.entra.revoke_all()}
        if parts == ["counters"] and method == "GET":
            return self.counters()
        if parts == ["orgs"]:
            if method == "POST":
                return self.create_org(body)
            return [self.org_summary(name) for name in self.store.data["orgs"]]
        if len(parts) >= 2 and parts[0] == "orgs":
            return self._org_route(method, parts[1], parts[2:], body)
        raise AdminError(404, f"no admin route {method} /_emulator/{route}")

    def _org_route(self, method: str, name: str, rest: list[str], body: dict[str, Any]) -> Any:
        org = self.store.org(name)
        if org is None:
            raise AdminError(404, f"no org {name!r}")
        if not rest:
            if method == "DELETE":
                del self.store.data["orgs"][name]
                self.app.close_org_port(org.get("port"))
                return {"deleted": name}
            return self.org_summary(name)
        if rest == ["settings"]:
            if method == "POST":
                org["settings"].update(_org_settings(body))
            return org["settings"]
        if rest == ["roles"]:
            if method == "POST":
                return self.add_role(org, body)
            return [_role_summary(role) for role in security.ensure_roles(org).values()]
        if len(rest) == 3 and rest[0] == "users" and rest[2] == "roles":
            user = _find_user(org, rest[1])
            if user is None:
                raise AdminError(404, f"org {name!r} has no user {rest[1]!r} (a client id, object id or systemuserid)")
            if method == "POST":
                try:
                    security.set_user_roles(org, user, [str(r) for r in body.get("roles", [])])
                except security.UnknownPrivilege as exc:
                    raise AdminError(400, str(exc)) from exc
            return _user_roles_summary(org, user)
        if rest == ["faults"]:
            if method == "POST":
                for kind, entry in faults.normalise(body, now()).items():
                    if entry is None:
                        org["faults"].pop(kind, None)
                    else:
                        org["faults"][kind] = entry
            elif method == "DELETE":
                org["faults"] = {}
            return org["faults"]
        if rest == ["counters"] and method == "GET":
            return self.counters(name)
        if len(rest) == 2 and rest[0] == "tables" and method == "POST":
            table = org["tables"].get(rest[1].lower())
            if table is None:
                raise AdminError(404, f"org {name!r} has no table {rest[1]!r}")
            table["rows"] = int(body["rows"])
            return {"logical_name": table["logical_name"], "rows": table["rows"]}
        if rest == ["tables"] and method == "GET":
            return {k: {"rows": v["rows"], "custom": v["custom"]} for k, v in org["tables"].items()}
        if rest == ["install"] and method == "POST":
            return self.install(org, body)
        if rest == ["platform-solutions"] and method == "POST":
            return self.add_platform_solution(org, body)
        if len(rest) == 3 and rest[0] == "operations" and method == "POST":
            if rest[2] == "cancel":
                op = self.app.solutions.cancel(org, rest[1])
                return self.app.solutions.operation_view(op, now())
            if rest[2] == "complete":
                return self.complete_now(org, rest[1])
        raise AdminError(404, f"no admin route {method} /_emulator/orgs/{name}/{'/'.join(rest)}")

    @staticmethod
    def _touched_orgs(route: str, body: dict[str, Any], result: Any) -> list[str] | None:
        """Which org files a write changed (None = all, after a reset)."""
        parts = route.split("/")
        if parts[0] == "orgs" and len(parts) >= 2:
            return [parts[1]]
        if parts == ["orgs"] and isinstance(result, dict):
            return [result["name"]]
        if parts == ["clients"]:
            return [str(name) for name in body.get("orgs", [])]
        if parts == ["reset"]:
            return None
        return []

    # ------------------------------------------------------------------------------------------
    def reset(self) -> dict:
        for org in self.store.data["orgs"].values():
            self.app.close_org_port(org.get("port"))
        key = self.store.data.get("signing_key_pem")
        generation = self.store.data.get("token_generation", 0)
        self.store.data.clear()
        self.store.data.update(empty_state())
        self.store.data["signing_key_pem"] = key
        self.store.data["token_generation"] = generation + 1  # old tokens name orgs that are gone
        self.store.data["idp_port"] = self.app.idp_port
        return {"reset": True}

    def _public_state(self) -> dict:
        snapshot = self.store.snapshot()
        snapshot.pop("signing_key_pem", None)
        return snapshot

    def create_tenant(self, tenant_id: str | None = None, name: str | None = None) -> dict:
        tenant_id = (tenant_id or new_id()).lower()
        tenants = self.store.data["tenants"]
        if tenant_id not in tenants:
            tenants[tenant_id] = {"tenant_id": tenant_id, "name": name or tenant_id, "clients": {}, "identities": []}
        elif name:
            tenants[tenant_id]["name"] = name
        return self._tenant_summary(tenant_id)

    def _tenant_summary(self, tenant_id: str) -> dict:
        tenant = self.store.data["tenants"][tenant_id]
        return {
            "tenant_id": tenant_id,
            "name": tenant["name"],
            "authority": self.app.entra.authority(tenant_id),
            "clients": sorted(tenant["clients"]),
            "identities": tenant["identities"],
        }

    def add_identity(self, tenant_id: str, body: dict[str, Any]) -> dict:
        tenant = self.store.tenant(tenant_id)
        if tenant is None:
            raise AdminError(404, f"no tenant {tenant_id!r}")
        username = str(body["username"])
        identity = {
            "username": username,
            "display_name": str(body.get("display_name") or username.split("@")[0].title()),
            "object_id": str(body.get("object_id") or new_id()).lower(),
            "roles": [str(r) for r in body.get("roles", [])],
        }
        tenant["identities"] = [i for i in tenant["identities"] if i["username"] != username] + [identity]
        return identity

    def register_client(self, body: dict[str, Any]) -> dict:
        """Register (or update) a client credential and make it an application user of ``orgs``."""
        tenant_id = str(body["tenant_id"]).lower()
        tenant = self.store.tenant(tenant_id)
        if tenant is None:
            raise AdminError(404, f"no tenant {tenant_id!r}")
        client_id = str(body.get("client_id") or new_id()).lower()
        existing = tenant["clients"].get(client_id, {})
        client = {
            "client_id": client_id,
            "secret": str(body.get("client_secret") or existing.get("secret") or _secret()),
            "display_name": str(body.get("display_name") or existing.get("display_name") or f"app-{client_id[:8]}"),
            "object_id": existing.get("object_id") or new_id(),
            "redirect_uris": list(body.get("redirect_uris", existing.get("redirect_uris", []))),
        }
        tenant["clients"][client_id] = client
        for org_name in body.get("orgs", []):
            org = self.store.org(org_name)
            if org is None:
                raise AdminError(404, f"no org {org_name!r}")
            if org["tenant_id"] != tenant_id:
                raise AdminError(400, f"org {org_name!r} belongs to tenant {org['tenant_id']}")
            if client_id not in org["allowed_clients"]:
                org["allowed_clients"].append(client_id)
            user = orgs.ensure_application_user(org, client_id, client["object_id"], client["display_name"])
            if body.get("roles") is not None:
                try:
                    security.set_user_roles(org, user, [str(r) for r in body["roles"]])
                except security.UnknownPrivilege as exc:
                    raise AdminError(400, str(exc)) from exc
        return {
            "tenant_id": tenant_id,
            "client_id": client_id,
            "client_secret": client["secret"],
            "object_id": client["object_id"],
            "display_name": client["display_name"],
            "redirect_uris": client["redirect_uris"],
            "authority": self.app.entra.authority(tenant_id),
            "orgs": [n for n, o in self.store.data["orgs"].items() if client_id in o["allowed_clients"]],
        }

    def add_role(self, org: dict, body: dict[str, Any]) -> dict:
        """A custom security role: ``{"name", "privileges": [names] | {name: depth}}`` (depth "Global" if a list)."""
        privileges = body.get("privileges") or []
        chosen = dict(privileges) if isinstance(privileges, dict) else {str(p): "Global" for p in privileges}
        try:
            security.ensure_roles(org)
            return _role_summary(security.add_role(org, str(body["name"]), chosen))
        except security.UnknownPrivilege as exc:
            raise AdminError(400, str(exc)) from exc

    def create_org(self, body: dict[str, Any]) -> dict:
        name = str(body.get("name") or f"org-{secrets.token_hex(4)}").lower()
        if not orgs.ORG_NAME_RE.match(name):
            raise AdminError(400, "org names are lower-case letters, digits and '-', starting with a letter")
        if name in self.store.data["tenants"] or name in ("common", "organizations", "_emulator"):
            raise AdminError(400, f"{name!r} is reserved")
        if self.store.org(name) is not None:
            raise AdminError(409, f"org {name!r} exists")
        tenant_id = str(body.get("tenant_id") or "").lower()
        if not tenant_id:
            raise AdminError(400, "tenant_id is required")
        if self.store.tenant(tenant_id) is None:
            self.create_tenant(tenant_id)
        duration = float(
            body.get("operation_duration")
            or self.store.data["settings"].get("operation_duration")
            or self.app.default_operation_duration
        )
        choice = body.get("import_job_id_on_async")
        if choice is not None and choice not in unconfirmed.IMPORT_JOB_ID_ON_ASYNC_CHOICES:
            raise AdminError(400, f"import_job_id_on_async must be one of {unconfirmed.IMPORT_JOB_ID_ON_ASYNC_CHOICES}")
        addressing = str(body.get("addressing") or self.app.default_addressing)
        if addressing not in ("origin", "path"):
            raise AdminError(400, "addressing is 'origin' (the org at the root of its own port) or 'path'")
        if addressing == "origin" and self.app.listeners is None:
            raise AdminError(400, "this emulator serves no HTTPS; only 'path' addressing is possible")
        org = orgs.new_org(name, tenant_id, operation_duration=duration, import_job_id_on_async=choice)
        security.ensure_roles(org)
        if addressing == "origin":
            try:
                org["port"] = self.app.open_org_port(name, int(body.get("port") or 0))
            except OSError as exc:
                raise AdminError(409, f"cannot listen on port {body.get('port')}: {exc}") from exc
        self.store.data["orgs"][name] = org
        return self.org_summary(name)

    def org_summary(self, name: str) -> dict:
        org = self.store.data["orgs"][name]
        return {
            "name": name,
            "addressing": "origin" if org.get("port") else "path",
            "port": org.get("port") or self.app.port,
            "url": self.app.org_url(name),
            "api_url": f"{self.app.org_url(name)}/api/data/v9.2/",
            "organization_id": org["organization_id"],
            "tenant_id": org["tenant_id"],
            "authority": self.app.entra.authority(org["tenant_id"]),
            "settings": org["settings"],
            "allowed_clients": org["allowed_clients"],
            "faults": org["faults"],
            "requests": org.get("requests", 0),
        }

    def counters(self, org_name: str | None = None) -> dict:
        imports = []
        for key, count in sorted(self.store.data["counters"]["imports"].items()):
            org, solution, version, sha = key.split("|")
            if org_name is None or org == org_name:
                imports.append({"org": org, "solution": solution, "version": version, "sha256": sha, "count": count})
        requests = {
            name: org.get("requests", 0)
            for name, org in self.store.data["orgs"].items()
            if org_name is None or name == org_name
        }
        return {"imports": imports, "requests": requests}

    def install(self, org: dict, body: dict[str, Any]) -> dict:
        """Install a package at once through the same rules as an import (seeding, test setup).
        Writes solution history like an import; is not counted as a client import."""
        try:
            data = base64.b64decode(body["file"], validate=True)
        except (binascii.Error, KeyError) as exc:
            raise AdminError(400, "body needs 'file': the zip, base64") from exc
        package = read_package(data)
        self.store.put_blob(package.sha256, data)
        mode = str(body.get("mode") or ("holding" if body.get("holding") else "update"))
        if mode not in ("update", "holding", "upgrade"):
            raise AdminError(400, "mode is update, holding or upgrade")
        t = now()
        params = {"overwrite": True, "component_parameters": body.get("component_parameters") or []}
        service = self.app.solutions
        history = service._history_for_import(org, package, mode, t, params, new_id())
        outcome, row, sub_operation = service.execute_import(org, package, mode, t, params)
        orgs.history_finish(
            org,
            history,
            t=t,
            success=outcome.success,
            error_code=None if outcome.success else outcome.error.code,
            message=None if outcome.success else outcome.error.message,
            solution_id=row["solutionid"] if row else None,
            suboperation=sub_operation,
        )
        if not outcome.success:
            raise DataverseError(400, outcome.error.code, outcome.error.message)
        assert row is not None
        return {"solutionid": row["solutionid"], "uniquename": row["uniquename"], "version": row["version"]}

    def add_platform_solution(self, org: dict, body: dict[str, Any]) -> dict:
        microsoft = next(p for p in org["publishers"].values() if p["uniquename"] == unconfirmed.MICROSOFT_PUBLISHER[0])
        name = str(body["uniquename"])
        if orgs.find_solution(org, name) is not None:
            raise AdminError(409, f"solution {name!r} exists")
        row = orgs.add_solution(
            org,
            unique_name=name,
            friendly_name=str(body.get("friendlyname") or name),
            version=str(body.get("version") or "1.0.0.0"),
            managed=True,
            visible=True,
            publisher_id=microsoft["publisherid"],
            t=now(),
            system=True,
        )
        return {"solutionid": row["solutionid"], "uniquename": name}

    def complete_now(self, org: dict, op_id: str) -> dict:
        """Make a running operation due now (tests that must not wait for the configured duration)."""
        op = org["asyncoperations"].get(op_id.lower())
        if op is None:
            raise DataverseError(404, errors.RECORD_NOT_FOUND, f"asyncoperation {op_id} not found")
        if not op["emu_finalized"]:
            t = now()
            op["emu_started"] = min(op["emu_started"], t)
            op["emu_due"] = t
            self.app.solutions.finalize_due(org, t)
        return self.app.solutions.operation_view(op, now())


def _secret() -> str:
    """Entra client secrets are ~40 characters with a '~' (e.g. 'abc8Q~…'); this imitates the look."""
    raw = secrets.token_urlsafe(30)
    return f"{raw[:3]}8Q~{raw[3:]}"


def _role_summary(role: dict) -> dict:
    return {
        "roleid": role["roleid"],
        "name": role["name"],
        "ismanaged": role["ismanaged"],
        "privileges": role["emu_privileges"],
    }


def _find_user(org: dict, key: str) -> dict | None:
    wanted = key.lower()
    for user in org["systemusers"].values():
        if wanted in (
            user["systemuserid"],
            (user.get("applicationid") or "").lower(),
            user["azureactivedirectoryobjectid"],
        ):
            return user
    return None


def _user_roles_summary(org: dict, user: dict) -> dict:
    return {
        "systemuserid": user["systemuserid"],
        "applicationid": user.get("applicationid"),
        "roles": [role["name"] for role in security.user_roles(org, user)],
        "privileges": security.held_privileges(org, user),
    }


def _settings(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if "token_lifetime" in body:
        result["token_lifetime"] = int(body["token_lifetime"])
    if "operation_duration" in body:
        result["operation_duration"] = float(body["operation_duration"])
    unknown = set(body) - {"token_lifetime", "operation_duration"}
    if unknown:
        raise AdminError(400, f"unknown settings: {sorted(unknown)}")
    return result


def _org_settings(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if "operation_duration" in body:
        result["operation_duration"] = float(body["operation_duration"])
    if "import_job_id_on_async" in body:
        if body["import_job_id_on_async"] not in unconfirmed.IMPORT_JOB_ID_ON_ASYNC_CHOICES:
            raise AdminError(400, f"import_job_id_on_async must be one of {unconfirmed.IMPORT_JOB_ID_ON_ASYNC_CHOICES}")
        result["import_job_id_on_async"] = body["import_job_id_on_async"]
    if "privilege_check" in body:
        if body["privilege_check"] not in unconfirmed.PRIVILEGE_CHECK_CHOICES:
            raise AdminError(400, f"privilege_check must be one of {unconfirmed.PRIVILEGE_CHECK_CHOICES}")
        result["privilege_check"] = body["privilege_check"]
    unknown = set(body) - {"operation_duration", "import_job_id_on_async", "privilege_check"}
    if unknown:
        raise AdminError(400, f"unknown org settings: {sorted(unknown)}")
    return result
