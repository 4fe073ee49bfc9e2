"""``cdarts --help`` (of every command) and ``--version`` never import torch, kfp, mlflow & co.

A test of the import graph, not of time: one fresh interpreter runs the real entry point once per
command, in order, and records which heavy modules each run newly imported (modules stay
imported, so the run that first pulls one is the one named).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer
from typer.core import TyperGroup

from cdarts import __version__
from cdarts.cli.main import app
from tests.conftest import REPO_ROOT

HEAVY = (
    "torch",
    "torchvision",
    "kfp",
    "mlflow",
    "minio",
    "boto3",
    "botocore",
    "matplotlib",
    "sklearn",
    "pandas",
    "scipy",
)

# Runs each step (["import", MODULE] or cdarts arguments) and prints, per step, its exit code, its
# stdout and the heavy modules it newly imported, as JSON.
PROBE = r"""
import contextlib, importlib, io, json, sys

heavy, steps = json.loads(sys.argv[1]), json.loads(sys.argv[2])
real_stdout, results = sys.stdout, []
for step in steps:
    before = {name for name in heavy if name in sys.modules}
    out, code = io.StringIO(), 0
    with contextlib.redirect_stdout(out):
        if step[0] == "import":
            importlib.import_module(step[1])
        else:
            from cdarts.cli.main import main

            sys.argv = ["cdarts", *step]
            try:
                main()
            except SystemExit as exit:
                code = exit.code
    pulled = sorted(name for name in heavy if name in sys.modules and name not in before)
    results.append({"exit_code": code, "stdout": out.getvalue(), "pulled": pulled})
real_stdout.write(json.dumps(results))
"""


def _command_paths(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group below ``command`` (itself included), as argument tuples."""
    paths = [path]
    if isinstance(command, TyperGroup):
        for name, sub in sorted(command.commands.items()):
            paths += _command_paths(sub, (*path, name))
    return paths


COMMAND_PATHS = _command_paths(typer.main.get_command(app))
STEPS = [["--help"], ["--version"], *([*path, "--help"] for path in COMMAND_PATHS if path)]


def _probe(steps: list[list[str]]) -> list[dict[str, object]]:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY), json.dumps(steps)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    results: list[dict[str, object]] = json.loads(completed.stdout)
    return results


@pytest.fixture(scope="module")
def walk() -> dict[str, dict[str, object]]:
    return {" ".join(step): result for step, result in zip(STEPS, _probe(STEPS), strict=True)}


def test_the_walk_covers_the_command_tree() -> None:
    names = {" ".join(path) for path in COMMAND_PATHS}
    assert {"stage", "stage search", "genotype show", "gitops sync", "run", "compile", "submit", "lineage"} <= names
    assert len(STEPS) == len(COMMAND_PATHS) + 1


@pytest.mark.parametrize("step", STEPS, ids=" ".join)
def test_help_and_version_import_no_heavy_module(step: list[str], walk: dict[str, dict[str, object]]) -> None:
    command = " ".join(["cdarts", *step])
    result = walk[" ".join(step)]
    assert result["pulled"] == [], f"`{command}` imported {result['pulled']}"
    assert result["exit_code"] == 0, f"`{command}` exited {result['exit_code']}"
    if step == ["--version"]:
        assert result["stdout"] == f"cdarts {__version__}\n"
    else:
        assert f"Usage: {' '.join(['cdarts', *step[:-1]])} " in str(result["stdout"]), result["stdout"]


def test_the_probe_detects_a_heavy_import() -> None:
    """Control: a module the search command really runs does pull torch, and the probe sees it."""
    (result,) = _probe([["import", "cdarts.runners.search"]])
    assert "torch" in result["pulled"]  # type: ignore[operator]
