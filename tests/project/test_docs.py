"""The repository stands on its own, and docs/ cannot drift from the code without a test failing.

- No tracked file cites a document the repository does not have (the founding design, the shared
  reference documents, the house style, the glossary), except vendored assets and third-party files
  copied unchanged (their attribution may name paths of other repositories: those are facts).
- Every `docs/<name>.md` a file cites exists, and so does every `§N.M` section cited with it; every
  relative link of the repository's Markdown resolves; docs/README.md lists every document.
- Every API error code the code can answer is in docs/api.md, found by reading the code (an AST scan,
  not a hand-kept list); every promotion and job status, move, job kind, pre-flight status and rollback
  strategy is in docs/states.md; every role, scope, the scopes of each role and the scope of every API
  operation are in docs/roles.md.
- The worked example of docs/audit.md is what the code computes.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
THIS_FILE = Path(__file__).resolve().relative_to(ROOT).as_posix()

# Vendored assets, and third-party files copied unchanged (with their attribution files).
EXEMPT_PREFIXES = ("static/vendor/", "tests/fixtures/corpus/")
EXEMPT_NAMES = ("ATTRIBUTION.md",)
SKIPPED_DIRECTORIES = {".git", ".venv", "var", "node_modules", "__pycache__", ".pytest_cache", ".mypy_cache"}

# Documents that are not in the repository, and how they used to be cited.
FOREIGN_CITATIONS = {
    "the founding design (DESIGN)": re.compile(r"\bDESIGN\b"),
    "a path outside the repository (../shared, /work/shared)": re.compile(
        r"\.\./shared\b|/work/shared\b|\bshared/(?:reference|corpus)\b"
    ),
    "the shared Dataverse reference (cite docs/dataverse.md §N.M)": re.compile(
        r"\b[Rr]eference (?:sections? )?\d|dataverse-web-api\.md"
    ),
    "the reliability-security reference": re.compile(r"reliability-security"),
    "the landscape reference": re.compile(r"\blandscape\.md\b"),
    "the house style (STYLE)": re.compile(r"\bSTYLE\b"),
    "the glossary outside the repository (cite docs/glossary.md)": re.compile(r"\bGLOSSARY\b"),
}

# docs/<name>.md, optionally followed by sections: "§7.1/§7.2", "§3-§6, §10", "§1 and §4" (also across a
# line break inside a comment). A path inside a URL or another repository ("…/docs/x.md") is not ours.
_SECTION_SEPARATOR = r"(?:\s*(?:#\s*)?(?:,|/|-|–|and)?\s*)"
DOC_CITATION = re.compile(
    rf"(?<![\w/.-])docs/(?P<name>[\w-]+)\.md(?P<sections>(?:{_SECTION_SEPARATOR}§\d+(?:\.\d+)*)*)"
)
SECTION_NUMBER = re.compile(r"§(\d+(?:\.\d+)*)")
HEADING_NUMBER = re.compile(r"^#{1,6}[ \t]+(\d+(?:\.\d+)*)\.?[ \t]", re.M)
MARKDOWN_LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


# --- the repository's files ----------------------------------------------------------------------------


def _tracked_files() -> list[str]:
    """Files under version control (a checkout without git: every file outside build and tool folders)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, timeout=60
        ).stdout.decode("utf-8")
        names = [name for name in listed.split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        names = []
        for folder, subfolders, files in os.walk(ROOT):
            subfolders[:] = [name for name in subfolders if name not in SKIPPED_DIRECTORIES]
            names += [(Path(folder) / name).relative_to(ROOT).as_posix() for name in files]
    return sorted(name for name in names if (ROOT / name).is_file())


def _text_files() -> Iterator[tuple[str, str]]:
    for name in _tracked_files():
        try:
            yield name, (ROOT / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary


def _exempt(name: str) -> bool:
    return name.startswith(EXEMPT_PREFIXES) or Path(name).name in EXEMPT_NAMES or name == THIS_FILE


@pytest.fixture(scope="module")
def text_files() -> list[tuple[str, str]]:
    return list(_text_files())


# --- citations -----------------------------------------------------------------------------------------


def test_no_file_cites_a_document_the_repository_does_not_have(text_files: list[tuple[str, str]]) -> None:
    found = []
    for name, text in text_files:
        if _exempt(name):
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for what, pattern in FOREIGN_CITATIONS.items():
                if pattern.search(line):
                    found.append(f"{name}:{number}: cites {what}: {line.strip()[:160]}")
    assert found == [], "cite docs/<name>.md (docs/README.md lists them) or a public page instead:\n" + "\n".join(found)


def _doc_sections(name: str) -> set[str]:
    return set(HEADING_NUMBER.findall((DOCS / f"{name}.md").read_text(encoding="utf-8")))


def test_every_cited_doc_and_section_exists(text_files: list[tuple[str, str]]) -> None:
    missing = []
    cited = 0
    for name, text in text_files:
        if name.startswith(EXEMPT_PREFIXES) or name == THIS_FILE:
            continue
        for match in DOC_CITATION.finditer(text):
            cited += 1
            line = text.count("\n", 0, match.start()) + 1
            doc = match.group("name")
            if not (DOCS / f"{doc}.md").is_file():
                missing.append(f"{name}:{line}: docs/{doc}.md does not exist")
                continue
            sections = _doc_sections(doc)
            for section in SECTION_NUMBER.findall(match.group("sections")):
                if section not in sections:
                    missing.append(f"{name}:{line}: docs/{doc}.md has no section {section}")
    assert cited > 100, "the citation scan found almost nothing: is the pattern still right?"
    assert missing == [], "\n".join(missing)


def _markdown_files() -> list[str]:
    return [name for name in _tracked_files() if name.endswith(".md") and not name.startswith(EXEMPT_PREFIXES)]


def test_every_relative_link_of_the_markdown_resolves() -> None:
    broken = []
    markdown = _markdown_files()
    assert "README.md" in markdown and "docs/README.md" in markdown
    for name in markdown:
        text = (ROOT / name).read_text(encoding="utf-8")
        for match in MARKDOWN_LINK.finditer(text):
            target = match.group("target")
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL (https:, mailto:) or an anchor of the same page
            path = target.split("#", 1)[0]
            if not (ROOT / name).parent.joinpath(path).resolve().exists():
                broken.append(f"{name}: [{target}] does not resolve")
    assert broken == [], "\n".join(broken)


def test_the_docs_index_lists_every_document() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    linked = {match.group("target").split("#", 1)[0] for match in MARKDOWN_LINK.finditer(index)}
    unlisted = sorted(path.name for path in DOCS.glob("*.md") if path.name != "README.md" and path.name not in linked)
    assert unlisted == [], f"add these to the table of docs/README.md: {unlisted}"


def test_the_readme_links_the_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Documentation" in readme
    linked = {match.group("target") for match in MARKDOWN_LINK.finditer(readme)}
    for doc in ("states", "roles", "api", "audit", "demo", "dataverse"):
        assert f"docs/{doc}.md" in linked, f"README.md does not link docs/{doc}.md"


# --- API error codes -------------------------------------------------------------------------------------

# Where the API's codes come from: the product's packages, not the Dataverse client library (Dataverse's
# own codes), the emulator, tests, benchmarks or scripts.
_NOT_PRODUCT = ("tests/", "bench/", "scripts/", "dataverse_emulator/", "alm_portal/dataverse/", "examples/")
_CODE = re.compile(r"^[a-z][a-z0-9_]*$")


def _string(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and _CODE.match(node.value):
        return node.value
    return None


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def api_error_codes() -> dict[str, list[str]]:
    """Every code the API can answer, by where it is written:

    - `Refusal("code", …)` (deployments/policy.py);
    - `code = "…"` / `default_code = "…"` (DomainError subclasses, DRF exceptions);
    - `code="…"` keyword arguments (DomainError(…, code=…), AuthenticationFailed, TokenRejected); not those
      of `ValidationError`, whose codes the API answers as `validation_error`;
    - `{"code": "…"}` dict literals (responses built by hand: the 500 answer, the Idempotency-Key middleware);
    - `<name>_error(<HTTP status>, "code", …)` helpers that build an error answer;
    - the strings returned by the exception handler's `_code_for` (DRF's own exceptions).
    """
    found: dict[str, list[str]] = {}

    def add(code: str | None, where: str) -> None:
        if code is not None:
            found.setdefault(code, []).append(where)

    for name in _tracked_files():
        if not name.endswith(".py") or name.startswith(_NOT_PRODUCT) or "/migrations/" in name:
            continue
        tree = ast.parse((ROOT / name).read_text(encoding="utf-8"), filename=name)
        for node in ast.walk(tree):
            where = f"{name}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call):
                called = _call_name(node)
                if called == "Refusal" and node.args:
                    add(_string(node.args[0]), where)
                status = node.args[0] if node.args else None
                if called.endswith("_error") and isinstance(status, ast.Constant) and isinstance(status.value, int):
                    add(_string(node.args[1]) if len(node.args) > 1 else None, where)
                if called != "ValidationError":
                    for keyword in node.keywords:
                        if keyword.arg == "code":
                            add(_string(keyword.value), where)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id in ("code", "default_code") for t in targets):
                    add(_string(node.value), where)
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "code":
                        add(_string(value), where)
            elif isinstance(node, ast.FunctionDef) and "code_for" in node.name:
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Return):
                        add(_string(inner.value), f"{name}:{inner.lineno}")
    return found


def test_the_error_code_scan_finds_the_codes_it_must() -> None:
    codes = set(api_error_codes())
    # One of each way a code is written; if the scan stops seeing them, the next test proves nothing.
    assert {
        "validation_error",  # class attribute
        "self_approval_forbidden",  # Refusal(...)
        "scope_insufficient",  # default_code
        "token_revoked",  # code= keyword
        "server_error",  # {"code": ...}
        "method_not_allowed",  # _code_for
        "precondition_failed",
        "idempotency_key_reused",
    } <= codes


def test_every_api_error_code_is_documented() -> None:
    documented = set(re.findall(r"`([a-z][a-z0-9_]*)`", (DOCS / "api.md").read_text(encoding="utf-8")))
    missing = {code: where for code, where in api_error_codes().items() if code not in documented}
    assert missing == {}, "add these codes, with their HTTP status and meaning, to docs/api.md §2:\n" + "\n".join(
        f"  {code}  ({', '.join(where[:3])})" for code, where in sorted(missing.items())
    )


# --- docs/states.md and docs/roles.md against the code ----------------------------------------------------


@dataclass
class Table:
    section: str
    header: list[str]
    rows: list[list[str]]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def tables_of(doc: str) -> list[Table]:
    """The Markdown tables of docs/<doc>.md, each with the number of the `## N.` section it is in."""
    tables: list[Table] = []
    section = ""
    current: list[str] = []
    for line in [*(DOCS / f"{doc}.md").read_text(encoding="utf-8").splitlines(), ""]:
        heading = re.match(r"^##[ \t]+(\d+)\.", line)
        if heading:
            section = heading.group(1)
        if line.lstrip().startswith("|"):
            current.append(line)
            continue
        if len(current) >= 2:
            rows = [_cells(row) for row in current[2:]]
            tables.append(Table(section, _cells(current[0]), rows))
        current = []
    return tables


def _names(cell: str) -> list[str]:
    return re.findall(r"`([a-z_]+)`", cell)


def _table(doc: str, *, section: str | None = None, header: tuple[str, ...]) -> Table:
    found = [
        t
        for t in tables_of(doc)
        if tuple(h.lower() for h in t.header[: len(header)]) == tuple(h.lower() for h in header)
        and (section is None or t.section == section)
    ]
    assert len(found) == 1, f"docs/{doc}.md should have one table headed {header} (section {section}): {len(found)}"
    return found[0]


def _section_of(doc: str, title: str) -> str:
    text = (DOCS / f"{doc}.md").read_text(encoding="utf-8")
    match = re.search(rf"^##[ \t]+(\d+)\.[ \t]+{title}", text, re.M)
    assert match, f"docs/{doc}.md has no '## N. {title}' section"
    return match.group(1)


def _moves(table: Table) -> dict[str, set[str]]:
    moves: dict[str, set[str]] = {}
    for row in table.rows:
        (origin,) = _names(row[0]) or [row[0]]
        moves.setdefault(origin, set()).update(_names(row[1]))
    return moves


def _assert_moves(documented: dict[str, set[str]], code: dict[str, tuple[str, ...]], where: str) -> None:
    problems = []
    for status in sorted(set(code) | set(documented)):
        if status not in documented:
            problems.append(f"{where} has no row for `{status}`")
        elif status not in code:
            problems.append(f"{where} lists `{status}`, which the code does not have")
        else:
            for target in sorted(set(code[status]) - documented[status]):
                problems.append(f"{where} lacks the move `{status}` → `{target}`")
            for target in sorted(documented[status] - set(code[status])):
                problems.append(f"{where} lists the move `{status}` → `{target}`, which the code does not allow")
    assert problems == [], "\n".join(problems)


def _first_column(table: Table) -> list[str]:
    return [name for row in table.rows for name in _names(row[0])]


def test_every_promotion_status_and_move_is_in_the_states_doc() -> None:
    from deployments.choices import PROMOTION_TRANSITIONS, PromotionStatus

    section = _section_of("states", "Promotions")
    meanings = _table("states", section=section, header=("Status",))
    assert sorted(_first_column(meanings)) == sorted(PromotionStatus.values)
    moves = _table("states", section=section, header=("From", "To"))
    _assert_moves(_moves(moves), PROMOTION_TRANSITIONS, f"docs/states.md §{section} (promotion moves)")


def test_every_job_kind_status_and_move_is_in_the_states_doc() -> None:
    from alm_portal.job_kinds import JobKind
    from alm_portal.jobs.choices import JOB_TRANSITIONS, JobStatus

    section = _section_of("states", "Jobs")
    assert sorted(_first_column(_table("states", section=section, header=("Kind",)))) == sorted(JobKind.values)
    assert sorted(_first_column(_table("states", section=section, header=("Status",)))) == sorted(JobStatus.values)
    moves = _table("states", section=section, header=("From", "To"))
    _assert_moves(_moves(moves), JOB_TRANSITIONS, f"docs/states.md §{section} (job moves)")


def test_every_preflight_status_and_rollback_strategy_is_in_the_states_doc() -> None:
    from deployments.choices import PreflightStatus, RollbackStrategy

    preflight = _table("states", header=("`preflight_status`",))
    assert sorted(_first_column(preflight)) == sorted(PreflightStatus.values)
    strategies = _table("states", header=("Strategy",))
    assert sorted(_first_column(strategies)) == sorted(RollbackStrategy.values)


def test_every_role_and_scope_and_the_scopes_of_each_role_are_in_the_roles_doc() -> None:
    from alm_portal.accounts.choices import ROLE_SCOPES, Role, Scope

    assert sorted(_first_column(_table("roles", header=("Role", "May see")))) == sorted(Role.values)
    assert sorted(_first_column(_table("roles", header=("Scope", "Allows")))) == sorted(Scope.values)
    documented = {_names(row[0])[0]: sorted(_names(row[1])) for row in _table("roles", header=("Role", "Scopes")).rows}
    assert documented == {role: sorted(scopes) for role, scopes in ROLE_SCOPES.items()}


def test_every_api_operation_and_the_scope_it_needs_is_in_the_roles_doc() -> None:
    from drf_spectacular.generators import EndpointEnumerator

    from alm_portal.accounts.permissions import required_scope

    code = {}
    for path, _regex, method, callback in EndpointEnumerator().get_api_endpoints():
        if not path.startswith("/api/v1/"):
            continue
        view = callback.cls(**getattr(callback, "initkwargs", {}))
        actions = getattr(callback, "actions", None)
        if actions:
            view.action = actions.get(method.lower())
        code[f"{method} {path}"] = required_scope(view, method)
    table = _table("roles", header=("Operation", "Scope"))
    documented = {row[0].strip("`"): row[1].strip("`") for row in table.rows}
    assert len(code) > 50
    assert documented == code, "docs/roles.md §4 differs from the API: " + json.dumps(
        {
            "missing": sorted(set(code) - set(documented)),
            "gone": sorted(set(documented) - set(code)),
            "scope": {op: [documented[op], code[op]] for op in code if op in documented and documented[op] != code[op]},
        },
        indent=1,
    )


# --- the worked example of docs/audit.md --------------------------------------------------------------------


def _code_blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)]


def _load_offline_verifier():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("verify_audit_export", ROOT / "scripts" / "verify_audit_export.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_worked_example_of_the_audit_doc_is_what_the_code_computes() -> None:
    from alm_portal.audit.canonical import CANONICAL_FIELDS, GENESIS_HASH, canonical_json, event_hash

    text = (DOCS / "audit.md").read_text(encoding="utf-8")
    example = text[text.index("### 2.1 Worked example") : text.index("## 3.")]
    blocks = _code_blocks(example)
    lines = next(body for kind, body in blocks if kind == "jsonl").splitlines()
    canonical_block = next(body for kind, body in blocks if kind == "json").strip()
    outputs = [body for kind, body in blocks if kind == ""]

    rows = [json.loads(line) for line in lines]
    assert len(rows) == 2
    assert rows[0]["prev_hash"] == GENESIS_HASH and rows[1]["prev_hash"] == rows[0]["hash"]
    for row in rows:
        assert event_hash({name: row[name] for name in CANONICAL_FIELDS}) == row["hash"]
    assert canonical_block == canonical_json({name: rows[0][name] for name in CANONICAL_FIELDS})
    quoted = set(re.findall(r"\b[0-9a-f]{64}\b", example))
    assert quoted <= {row["hash"] for row in rows} | {GENESIS_HASH}

    verifier = _load_offline_verifier()
    out = io.StringIO()
    assert verifier.verify(lines, out) == 0
    assert out.getvalue() == outputs[0]
    tampered = json.loads(lines[1])
    tampered["after"]["previous_version"] = "1.0.0.3"
    out = io.StringIO()
    assert verifier.verify([lines[0], json.dumps(tampered, ensure_ascii=False)], out) == 1
    assert out.getvalue() == outputs[1]
