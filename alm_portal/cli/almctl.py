#!/usr/bin/env python3
"""almctl: request and follow ALM Portal promotions from CI (GitHub Actions, Azure DevOps, scripts).

Standard library plus `requests` only, no Django: the file runs on its own (`python almctl.py …`), as
`python -m alm_portal.cli …` in a checkout, or as the `almctl` entry point.

    ALM_URL=https://alm.example.com ALM_TOKEN=alm_12_… almctl promote Contoso --version 1.2.0.0 --stage prod --wait

Commands
    promote SOLUTION --version V --stage NAME [--justification T] [--change-reference R]
            [--backup-reference R] [--scheduled-for TIME] [--wait]
    status ID [--wait]                 a promotion
    approve ID [--comment T]
    export SOLUTION [--bump revision|build|minor|major|none] [--wait]
    upload FILE [--release-notes T] [--home-environment NAME]
    rollback ID --strategy S [--justification T] [--confirm UNIQUE_NAME] [--wait]

Global options (--url, --token, --timeout, --poll, --outage, --json) go before or after the command.
A stage may require a change reference (matching its pattern) and a backup reference: give them with
--change-reference and --backup-reference. When the portal refuses a request, almctl prints its error
code, its message and every field message it gave (`  backup_reference: …`).

A request that fails for a moment (connection refused or reset, a timeout, 429, 502, 503, 504) is
sent again after 1, 2, 4 … s (from --poll when it is below 1 s; at most 60 s; longer when the portal
sends Retry-After), with the same
Idempotency-Key, so a POST that did arrive is answered from the first response instead of acting twice.
Only an outage lasting --outage seconds (default 300) ends the command, with exit code 4; a promotion
it was waiting for may still complete: look again with `almctl status ID --wait`.

Exit codes: 0 succeeded (or accepted, without --wait), 1 failed, rejected, cancelled or refused by the
portal, 2 usage (bad arguments, ALM_URL/ALM_TOKEN missing), 3 timed out while waiting, 4 the portal
stayed unreachable for --outage seconds.
Every invocation sends its own Idempotency-Key, so a retried HTTP request never acts twice.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import requests

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
# Answers that mean "not now" rather than "no": the request is sent again after a pause.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_BACKOFF = 60.0
# How --wait pauses between looks (tests replace it to run the worker's part inline).
SLEEP: Callable[[float], None] = time.sleep
PROMOTION_DONE = {"succeeded": EXIT_OK, "failed": EXIT_FAILED, "rejected": EXIT_FAILED, "cancelled": EXIT_FAILED}
# A rolled-back deployment had succeeded, and was then replaced by its rollback.
PROMOTION_DONE["rolled_back"] = EXIT_OK
JOB_DONE = {"succeeded": EXIT_OK, "failed": EXIT_FAILED, "cancelled": EXIT_FAILED, "needs_attention": EXIT_FAILED}
USER_AGENT = "almctl/1.0"


class UsageError(Exception):
    """Bad arguments or environment: exit 2."""


class PortalError(Exception):
    """The portal refused or failed: exit 1, with its error code, message and field messages."""

    exit_code = EXIT_FAILED

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details

    def explain(self) -> list[str]:
        """The refusal in lines: status, code and message, then one line per field message (a 400
        names the fields it refused) or per detail the portal gave (e.g. the promotion that already exists)."""
        return [str(self), *_detail_lines(self.details)]


class PortalUnreachable(PortalError):
    """The portal did not answer (or answered "not now") for longer than the outage budget: exit 4."""

    exit_code = EXIT_UNREACHABLE


def _detail_lines(details: Any, prefix: str = "") -> list[str]:
    if isinstance(details, dict):
        existing = details.get("existing")
        if isinstance(existing, dict) and "id" in existing:  # duplicate_request names the open promotion
            rest = {key: value for key, value in details.items() if key != "existing"}
            line = f"  {prefix}existing: promotion {existing['id']} ({existing.get('status', '?')})"
            return [line + (f" {existing['url']}" if existing.get("url") else ""), *_detail_lines(rest, prefix)]
        lines = []
        for field, value in details.items():
            if isinstance(value, dict):
                lines += _detail_lines(value, f"{prefix}{field}.")
            elif isinstance(value, list):
                texts = [item if isinstance(item, str) else json.dumps(item, sort_keys=True) for item in value]
                lines.append(f"  {prefix}{field}: {' '.join(texts)}")
            else:
                lines.append(f"  {prefix}{field}: {value}")
        return lines
    if isinstance(details, list):
        return [f"  {prefix.rstrip('.') or 'error'}: {item}" for item in details]
    return []


class Portal:
    """A thin client of /api/v1/ with the caller's bearer token.

    A request that fails for a moment is sent again with backoff until it has failed for `outage`
    seconds (then PortalUnreachable); `notice` hears about each retry.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        outage: float = 300.0,
        first_backoff: float = 1.0,
        notice: Callable[[str], None] | None = None,
    ):
        self.base = url.rstrip("/") + "/api/v1/"
        self.timeout = timeout
        self.outage = outage
        self.first_backoff = max(0.01, first_backoff)
        self.notice = notice or (lambda text: None)
        self.session = session or requests.Session()
        self.session.headers.update(
            {"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": USER_AGENT}
        )
        # One key per invocation; each POST path scopes it, so one run's different POSTs never collide.
        self.idempotency_key = f"almctl-{uuid.uuid4()}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {})
        if method == "POST":
            headers["Idempotency-Key"] = self.idempotency_key
        # A streamed upload cannot be sent twice from the same open file: one attempt.
        retry = "files" not in kwargs
        first_failure: float | None = None
        failures = 0
        while True:
            problem, wait = self._attempt(method, path, headers, kwargs)
            if problem is None:
                return wait  # the answer's body
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            failures += 1
            down_for = now - first_failure
            if not retry or down_for >= self.outage:
                raise PortalUnreachable(
                    0,
                    "unreachable",
                    f"{self.base} did not answer for {down_for:.0f} s ({failures} attempts): {problem}",
                )
            delay = min(MAX_BACKOFF, self.first_backoff * 2 ** (failures - 1), self.outage - down_for)
            delay = max(delay, float(wait or 0))
            self.notice(f"{problem}; trying again in {delay:.1f} s")
            SLEEP(delay)

    def _attempt(self, method: str, path: str, headers: dict[str, str], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        """One try: (None, body) on an answer, (problem, seconds to wait at least) when it is worth retrying.
        Raises PortalError for a refusal."""
        try:
            response = self.session.request(
                method, self.base + path.lstrip("/"), headers=headers, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            return f"{self.base} did not answer ({type(exc).__name__}: {exc})", 0
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                refusal = PortalError(response.status_code, error["code"], error["message"], error.get("details"))
            except (ValueError, KeyError, TypeError):
                refusal = PortalError(response.status_code, "http_error", response.text[:300])
            if response.status_code in RETRY_STATUSES or refusal.code == "idempotency_in_progress":
                retry_after = response.headers.get("Retry-After", "")
                wait = min(MAX_BACKOFF, float(retry_after)) if retry_after.isdigit() else 0
                return f"{self.base} answered {response.status_code} {refusal.code}", wait
            raise refusal
        return None, response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        if "files" in kwargs:
            return self.request("POST", path, data=body or {}, **kwargs)
        return self.request("POST", path, json=body if body is not None else {}, **kwargs)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    # -- lookups --

    def solution(self, unique_name: str) -> dict[str, Any]:
        found = self.get("solutions/", unique_name=unique_name)["results"]
        if not found:
            raise UsageError(f"No solution {unique_name!r} among those this token may see.")
        return found[0]

    def stage_id(self, solution: dict[str, Any], name: str) -> int:
        """The stage named `name` of the solution's pipeline."""
        pipeline = solution.get("pipeline")
        if not pipeline:
            raise UsageError(f"{solution['unique_name']} has no pipeline.")
        stages = self.get(f"pipelines/{pipeline['id']}/")["stages"]
        for stage in stages:
            if stage["name"].casefold() == name.casefold():
                return int(stage["id"])
        names = ", ".join(stage["name"] for stage in stages)
        raise UsageError(f"Pipeline {pipeline['name']!r} has no stage {name!r} (stages: {names}).")

    def version_id(self, solution: dict[str, Any], version: str) -> int:
        found = self.get("versions/", solution=solution["id"], version=version)["results"]
        if not found:
            raise UsageError(f"{solution['unique_name']} has no version {version} in the registry.")
        return int(found[0]["id"])


# --- output ------------------------------------------------------------------------------------------


class Output:
    def __init__(self, out: TextIO, *, as_json: bool) -> None:
        self.out, self.as_json = out, as_json

    def line(self, text: str) -> None:
        if not self.as_json:
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            print(f"[{stamp}] {text}", file=self.out, flush=True)

    def result(self, data: Any) -> None:
        if self.as_json:
            print(json.dumps(data, indent=2, sort_keys=True), file=self.out, flush=True)


def describe_promotion(promotion: dict[str, Any]) -> str:
    approvals = [
        a for a in promotion.get("approvals", []) if a.get("decision") == "approved" and not a.get("voided_at")
    ]
    parts = [
        f"promotion {promotion['id']} ({promotion['kind']}) {promotion['solution']['unique_name']} "
        f"{promotion['version']['version']} → {promotion['stage']['name']}: {promotion['status']}",
        f"approvals {len(approvals)}/{promotion['required_approvals']}",
        f"pre-flight {promotion['preflight']['status']}",
    ]
    running = [job for job in promotion.get("jobs", []) if job["kind"] == "import"]
    if running and promotion["status"] == "running":
        parts.append(f"import {running[-1]['progress']}%")
    if promotion.get("attention_required"):
        parts.append("NEEDS ATTENTION")
    if promotion.get("error"):
        parts.append(f"error {promotion['error']['code']}: {promotion['error']['message'][:200]}")
    return ", ".join(parts)


def describe_job(job: dict[str, Any]) -> str:
    text = f"job {job['id']} ({job['kind']}): {job['status']} {job['progress']}%"
    if job.get("progress_message"):
        text += f" {job['progress_message']}"
    if job.get("error"):
        text += f", error {job['error']['code']}: {job['error']['message'][:200]}"
    return text


def wait_for(
    fetch: Callable[[], dict[str, Any]],
    describe: Callable[[dict[str, Any]], str],
    done: dict[str, int],
    *,
    output: Output,
    timeout: float,
    poll: float,
    sleep: Callable[[float], None] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Poll until the object reaches a final status; print each change. (exit code, last state)."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        state = fetch()
        text = describe(state)
        if text != last:
            output.line(text)
            last = text
        if state["status"] in done:
            return done[state["status"]], state
        if time.monotonic() >= deadline:
            output.line(f"timed out after {timeout:.0f} s; {state['status']} is not final")
            return EXIT_TIMEOUT, state
        (sleep or SLEEP)(poll)


# --- commands --------------------------------------------------------------------------------------


def _finish_promotion(portal: Portal, promotion: dict[str, Any], args: argparse.Namespace, output: Output) -> int:
    if not args.wait:
        output.line(describe_promotion(promotion))
        output.result(promotion)
        return PROMOTION_DONE.get(promotion["status"], EXIT_OK)
    code, promotion = wait_for(
        lambda: portal.get(f"promotions/{promotion['id']}/"),
        describe_promotion,
        PROMOTION_DONE,
        output=output,
        timeout=args.timeout,
        poll=args.poll,
    )
    output.result(promotion)
    return code


def cmd_promote(portal: Portal, args: argparse.Namespace, output: Output) -> int:
    solution = portal.solution(args.solution)
    body: dict[str, Any] = {
        "version": portal.version_id(solution, args.version),
        "stage": portal.stage_id(solution, args.stage),
        "justification": args.justification,
    }
    for name in ("change_reference", "backup_reference", "scheduled_for"):
        if getattr(args, name):
            body[name] = getattr(args, name)
    promotion = portal.post("promotions/", body)
    output.line(f"requested promotion {promotion['id']}")
    return _finish_promotion(portal, promotion, args, output)


def cmd_status(portal: Portal, args: argparse.Namespace, output: Output) -> int:
    return _finish_promotion(portal, portal.get(f"promotions/{args.id}/"), args, output)


def cmd_approve(portal: Portal, args: argparse.Namespace, output: Output) -> int:
    promotion = portal.post(f"promotions/{args.id}/approve/", {"comment": args.comment or ""})
    output.line(describe_promotion(promotion))
    output.result(promotion)
    return EXIT_OK


def cmd_rollback(portal: Portal, args: argparse.Namespace, output: Output) -> int:
    body = {"strategy": args.strategy, "justification": args.justification}
    if args.confirm:
        body["confirm"] = args.confirm
    rollback = portal.post(f"promotions/{args.id}/rollback/", body)
    output.line(f"requested rollback {rollback['id']} of promotion {args.id} ({args.strategy})")
    return _finish_promotion(portal, rollback, args, output)


def _follow_job(
    portal: Portal, job: dict[str, Any], args: argparse.Namespace, output: Output, done: Callable[[dict[str, Any]], str]
) -> int:
    """Without --wait, print the queued job; with it, follow the job to its end and say what it made."""
    if not args.wait:
        output.result(job)
        return EXIT_OK
    code, job = wait_for(
        lambda: portal.get(f"jobs/{job['id']}/"),
        describe_job,
        JOB_DONE,
        output=output,
        timeout=args.timeout,
        poll=args.poll,
    )
    if code == EXIT_OK and (job.get("result") or {}).get("version"):
        output.line(done(job["result"]))
    output.result(job)
    return code


def cmd_export(portal: Portal, args: argparse.Namespace, output: Output) -> int:
    solution = portal.solution(args.solution)
    job = portal.post(f"solutions/{solution['id']}/export/", {"bump": args.bump})["job"]
    output.line(f"export of {solution['unique_name']} queued as job {job['id']}")
    return _follow_job(portal, job, args, output, lambda result: f"exported version {result['version']}")


def cmd_upload(portal: Portal, args: argparse.Namespace, output: Output) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{path} is not a file.")
    fields: dict[str, Any] = {"release_notes": args.release_notes or ""}
    if args.home_environment:
        found = portal.get("environments/", name=args.home_environment)["results"]
        if not found:
            raise UsageError(f"No environment {args.home_environment!r} among those this token may see.")
        fields["home_environment"] = found[0]["id"]
    with path.open("rb") as stream:
        version = portal.post(
            "versions/",
            fields,
            files={"file": (path.name, stream, "application/zip")},
        )
    outcome = (version.get("upload") or {}).get("outcome", "stored")
    output.line(f"{version['solution']['unique_name']} {version['version']}: {outcome} (version id {version['id']})")
    output.result(version)
    return EXIT_OK


def describe_binding(owner: str, binding: dict[str, Any]) -> str:
    credential = f", credential {binding['credential_kind']}" if binding.get("credential_set") else ""
    pipeline = binding.get("pipeline")
    through = f" (the binding of pipeline {pipeline['name']})" if pipeline and not owner.startswith("pipeline") else ""
    where = f"{binding['url']} branch {binding['branch']}, folder {binding['folder']}/"
    return f"{owner} → {where}{credential}{through}"


def _source_target(portal: Portal, args: argparse.Namespace) -> tuple[str, str]:
    """(what is bound, its API path): the solution named, or the pipeline of --pipeline."""
    if bool(args.solution) == bool(args.pipeline):
        raise UsageError("Name a solution, or a pipeline with --pipeline (not both).")
    if args.pipeline:
        found = portal.get("pipelines/", name=args.pipeline)["results"]
        if not found:
            raise UsageError(f"No pipeline {args.pipeline!r} among those this token may see.")
        return f"pipeline {found[0]['name']}", f"pipelines/{found[0]['id']}/source/"
    solution = portal.solution(args.solution)
    return solution["unique_name"], f"solutions/{solution['id']}/source/"


def cmd_source_show(portal: Portal, args: argparse.Namespace, output: Output) -> int:
    owner, path = _source_target(portal, args)
    binding = portal.get(path)
    output.line(describe_binding(owner, binding))
    output.result(binding)
    return EXIT_OK


def cmd_source_bind(portal: Portal, args: argparse.Namespace, output: Output) -> int:
    owner, path = _source_target(portal, args)
    body: dict[str, Any] = {
        "url": args.repository,
        "branch": args.branch,
        "root_folder": args.root,
        "username": args.username,
    }
    if args.token_env:
        token = os.environ.get(args.token_env, "")
        if not token:
            raise UsageError(f"${args.token_env} is empty; put the repository token there.")
        body["token"] = token
    if args.build_environment:
        found = portal.get("environments/", name=args.build_environment)["results"]
        if not found:
            raise UsageError(f"No environment {args.build_environment!r} among those this token may see.")
        body["build_environment"] = found[0]["id"]
    if args.ssh_key_file:
        key_path = Path(args.ssh_key_file)
        if not key_path.is_file():
            raise UsageError(f"{key_path} is not a file.")
        body["ssh_private_key"] = key_path.read_text()
    binding = portal.put(path, body)
    output.line(describe_binding(owner, binding))
    output.result(binding)
    return EXIT_OK


def cmd_source_unbind(portal: Portal, args: argparse.Namespace, output: Output) -> int:
    owner, path = _source_target(portal, args)
    portal.delete(path)
    output.line(f"{owner}: versions are no longer committed to source control through this binding")
    output.result({"unbound": owner})
    return EXIT_OK


def cmd_source_build(portal: Portal, args: argparse.Namespace, output: Output) -> int:
    solution = portal.solution(args.solution)
    job = portal.post(f"solutions/{solution['id']}/source/builds/", {"ref": args.ref})["job"]
    output.line(f"build of {solution['unique_name']} from {args.ref} queued as job {job['id']}")
    return _follow_job(
        portal,
        job,
        args,
        output,
        lambda result: f"built version {result['version']} from commit {result.get('commit', '')[:12]}",
    )


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes, before or after its name. The command's own copies default to
    SUPPRESS, so an option given before the command is not reset by the command's parser."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--url", default=default(os.environ.get("ALM_URL")), help="the portal (default: $ALM_URL)")
    parser.add_argument(
        "--token", default=default(os.environ.get("ALM_TOKEN")), help="an API token (default: $ALM_TOKEN)"
    )
    parser.add_argument(
        "--timeout", type=float, default=default(3600.0), help="seconds --wait waits at most (default 3600)"
    )
    parser.add_argument(
        "--poll", type=float, default=default(5.0), help="seconds between looks while waiting (default 5)"
    )
    parser.add_argument(
        "--outage",
        type=float,
        default=default(300.0),
        help="seconds the portal may stay unreachable before almctl gives up with exit code 4 (default 300)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print the final object as JSON instead of progress",
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="almctl",
        description="Request and follow ALM Portal promotions.",
        epilog="Exit codes: 0 succeeded, 1 failed or refused, 2 usage, 3 timed out waiting, "
        "4 the portal stayed unreachable for --outage seconds.",
    )
    _global_options(root, defaults=True)
    shared = argparse.ArgumentParser(add_help=False)
    _global_options(shared, defaults=False)
    commands = root.add_subparsers(dest="command", required=True)

    promote = commands.add_parser("promote", help="request a promotion of a version into a stage", parents=[shared])
    promote.add_argument("solution", help="the solution's unique name")
    promote.add_argument("--version", required=True)
    promote.add_argument("--stage", required=True, help="a stage name of the solution's pipeline")
    promote.add_argument("--justification", default="Requested by almctl")
    promote.add_argument("--change-reference", default="", help="e.g. CHG0012345; required by stages that ask for one")
    promote.add_argument(
        "--backup-reference", default="", help="where the pre-deployment backup is; required by stages that ask"
    )
    promote.add_argument(
        "--scheduled-for", default="", help="not before this time (RFC 3339 with an offset, e.g. 2026-12-12T02:00Z)"
    )
    promote.add_argument("--wait", action="store_true", help="wait for the outcome")
    promote.set_defaults(handler=cmd_promote)

    status = commands.add_parser("status", help="show a promotion", parents=[shared])
    status.add_argument("id", type=int)
    status.add_argument("--wait", action="store_true", help="wait for the outcome")
    status.set_defaults(handler=cmd_status)

    approve = commands.add_parser("approve", help="approve a promotion", parents=[shared])
    approve.add_argument("id", type=int)
    approve.add_argument("--comment", default="")
    approve.set_defaults(handler=cmd_approve)

    export = commands.add_parser("export", help="export a solution from its development environment", parents=[shared])
    export.add_argument("solution")
    export.add_argument("--bump", choices=["revision", "build", "minor", "major", "none"], default="revision")
    export.add_argument("--wait", action="store_true", help="wait for the export job")
    export.set_defaults(handler=cmd_export)

    upload = commands.add_parser("upload", help="upload a solution zip to the registry", parents=[shared])
    upload.add_argument("file")
    upload.add_argument("--release-notes", default="")
    upload.add_argument("--home-environment", default="", help="for a solution's first upload: its dev environment")
    upload.set_defaults(handler=cmd_upload)

    rollback = commands.add_parser(
        "rollback", help="roll back a promotion (the latest succeeded one)", parents=[shared]
    )
    rollback.add_argument("id", type=int)
    rollback.add_argument(
        "--strategy",
        required=True,
        choices=["reversion_upgrade", "reversion_update", "uninstall_reinstall", "holding_apply", "holding_remove"],
    )
    rollback.add_argument("--justification", default="Rollback requested by almctl")
    rollback.add_argument("--confirm", default="", help="uninstall_reinstall: the solution's unique name")
    rollback.add_argument("--wait", action="store_true", help="wait for the outcome")
    rollback.set_defaults(handler=cmd_rollback)

    source = commands.add_parser("source", help="source control: bind a solution to Git, build from a commit")
    source_commands = source.add_subparsers(dest="source_command", required=True)
    show = source_commands.add_parser("show", help="where a solution's versions are committed", parents=[shared])
    show.add_argument("solution", nargs="?", default="")
    show.add_argument("--pipeline", default="", help="the binding of a whole pipeline instead")
    show.set_defaults(handler=cmd_source_show)
    bind = source_commands.add_parser("bind", help="commit a solution's versions to a Git repository", parents=[shared])
    bind.add_argument("solution", nargs="?", default="")
    bind.add_argument("--pipeline", default="", help="bind a whole pipeline (admins) instead of one solution")
    bind.add_argument("--repository", required=True, help="https://…, ssh://… or git@host:path")
    bind.add_argument("--branch", default="main")
    bind.add_argument("--root", default="solutions", help="versions go to ROOT/<UniqueName>/src/ (default solutions)")
    bind.add_argument("--username", default="", help="https: the user name sent with the token")
    bind.add_argument(
        "--token-env", default="", help="the environment variable holding the https token (never on the command line)"
    )
    bind.add_argument("--ssh-key-file", default="", help="ssh: a file holding the OpenSSH private key")
    bind.add_argument(
        "--build-environment", default="", help="where builds are imported and exported managed (an environment name)"
    )
    bind.set_defaults(handler=cmd_source_bind)
    unbind = source_commands.add_parser("unbind", help="stop committing a solution's versions", parents=[shared])
    unbind.add_argument("solution", nargs="?", default="")
    unbind.add_argument("--pipeline", default="", help="remove a whole pipeline's binding instead")
    unbind.set_defaults(handler=cmd_source_unbind)
    build = source_commands.add_parser(
        "build", help="build a version from a branch, tag or commit of the bound repository", parents=[shared]
    )
    build.add_argument("--solution", required=True)
    build.add_argument("--ref", required=True, help="a branch, a tag or a commit")
    build.add_argument("--wait", action="store_true", help="wait for the build job")
    build.set_defaults(handler=cmd_source_build)
    return root


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:  # argparse prints usage and exits 2 (0 for --help)
        return int(exit_.code or 0)
    if not args.url or not args.token:
        print("almctl: set ALM_URL and ALM_TOKEN (or --url and --token)", file=err)
        return EXIT_USAGE
    output = Output(out, as_json=args.json)

    def notice(text: str) -> None:
        print(f"almctl: {text}", file=err, flush=True)

    portal = Portal(args.url, args.token, outage=args.outage, first_backoff=min(args.poll, 1.0), notice=notice)
    try:
        return int(args.handler(portal, args, output))
    except UsageError as problem:
        print(f"almctl: {problem}", file=err)
        return EXIT_USAGE
    except PortalError as refusal:
        for line in refusal.explain():
            print(f"almctl: {line}", file=err)
        if isinstance(refusal, PortalUnreachable):
            print("almctl: anything already requested may still complete; look again with `almctl status ID`", file=err)
        return refusal.exit_code


if __name__ == "__main__":
    sys.exit(main())
