"""The CI examples (examples/) are valid pipelines whose almctl commands are ones almctl accepts: an option renamed
in almctl breaks the examples here, not in a team's first pipeline run."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from alm_portal.cli import almctl

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WORKFLOWS = sorted(EXAMPLES.rglob("*.yml"))
ALMCTL = "python tools/almctl.py"
# Where a shell command line ends: a pipe, a redirection, a list operator.
COMMAND_END = {"|", ">", ">>", "<", "&&", "||", ";"}


def _scripts(node: object) -> Iterator[str]:
    """Every shell script of a GitHub Actions (`run`) or Azure DevOps (`script`) pipeline."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("run", "script") and isinstance(value, str):
                yield value
            else:
                yield from _scripts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _scripts(item)


def _almctl_commands(workflow: Path) -> list[list[str]]:
    commands = []
    for script in _scripts(yaml.safe_load(workflow.read_text())):
        for line in script.splitlines():
            if ALMCTL not in line:
                continue
            words = shlex.split(line[line.index(ALMCTL) + len(ALMCTL) :])
            end = next((i for i, word in enumerate(words) if word in COMMAND_END), len(words))
            commands.append(words[:end])
    return commands


def test_there_are_examples_for_both_ci_systems() -> None:
    names = {path.relative_to(EXAMPLES).as_posix() for path in WORKFLOWS}
    assert names == {
        "azure-devops/azure-pipelines.yml",
        "azure-devops/build-from-source.yml",
        "github-actions/build-from-source.yml",
        "github-actions/promote.yml",
    }


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.relative_to(EXAMPLES).as_posix())
def test_every_almctl_command_of_an_example_is_accepted_by_almctl(workflow: Path) -> None:
    commands = _almctl_commands(workflow)
    assert commands, f"{workflow} runs no almctl command"
    for command in commands:
        args = almctl.parser().parse_args(command)  # argparse exits (a test failure) on an unknown option
        assert args.handler is not None, command


@pytest.mark.parametrize("system", ["github-actions", "azure-devops"])
def test_build_from_source_builds_the_merged_commit_and_promotes_the_version_it_built(system: str) -> None:
    workflow = EXAMPLES / system / "build-from-source.yml"
    commands = _almctl_commands(workflow)
    build, promote = (almctl.parser().parse_args(command) for command in commands)
    assert (build.command, build.source_command, build.wait, build.json) == ("source", "build", True, True)
    merged_commit = {"github-actions": "$GITHUB_SHA", "azure-devops": "$(Build.SourceVersion)"}[system]
    assert build.ref == merged_commit
    # The built version is read from the job's result and handed to the promotion.
    assert '["result"]["version"]' in workflow.read_text()
    assert promote.command == "promote" and promote.stage == "test" and promote.wait
    assert re.fullmatch(r"\$\{\{ steps\.build\.outputs\.version \}\}|\$\(builtVersion\)", promote.version)
