"""The ``cdarts`` command line: outputs, and one-line errors with exit code 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.spaces.darts.architecture import Genotype
from cdarts.spaces.darts.parser import reference_genotype
from tests.conftest import CONFIGS, REPO_ROOT

runner = CliRunner()
TINY = str(CONFIGS / "tiny.yaml")


def _assert_one_line_error(result, fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cdarts: error: "), result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["stage", "search", "--config", "no/such.yaml", "--data", "d", "--out", "x"], "not found"),
        (
            ["stage", "search", "-c", TINY, "-d", "d", "--set", "search.nope=1", "--out", "x"],
            "search.nope: unknown key",
        ),
        (["stage", "search", "-c", TINY, "-d", "d", "--set", "search.batch_size=big", "-o", "x"], "search.batch_size"),
        (["stage", "search", "-c", TINY, "-d", "no_such_dir", "-o", "x"], "not a prepared dataset"),
        (["stage", "data-prep", "-c", TINY, "--source", "cifar10", "-o", "x"], "needs a location"),
        (["stage", "data-prep", "-c", TINY, "--source", "svhn:/x", "-o", "x"], "unknown source 'svhn'"),
        (["stage", "data-prep", "-c", TINY, "--source", "cifar10:/no/such/dir", "-o", "x"], "does not exist"),
        (["stage", "data-prep", "-c", TINY, "--source", "imagefolder:/no/dir", "-o", "x"], "does not exist"),
        (["stage", "retrain", "-c", TINY, "-d", "d", "-g", "NOPE", "-o", "x"], "neither a known architecture name"),
        (["stage", "evaluate", "-c", TINY, "-d", "d", "-m", "m", "-o", "x"], "not a prepared dataset"),
        (["model", "summary", "-g", "NOPE", "--dataset", "cifar10"], "neither a known architecture name"),
        pytest.param(
            ["stage", "search", "--config", TINY, "--data", "d", "--set", "device=cuda:0", "--out", "x"],
            "CUDA is not available",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA"),
        ),
        (["stage", "derive-genotype", "--alphas", "missing.pt", "--out", "x"], "does not exist"),
        (["genotype", "show", "Genotype(normal=exec('x'))"], "Genotype(...) needs exactly the keywords"),
        (["genotype", "show", "NO_SUCH_CELL"], "neither a known architecture name"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    args: list[str], fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _assert_one_line_error(runner.invoke(app, args), fragment)


def test_search_on_a_batch_larger_than_the_split_is_a_clear_error(tmp_path: Path, tiny_dataset: Path) -> None:
    result = runner.invoke(
        app,
        [
            "stage",
            "search",
            "-c",
            TINY,
            "-d",
            str(tiny_dataset),
            "-s",
            "search.batch_size=64",
            "-o",
            str(tmp_path),
            "--no-progress",
        ],
    )
    _assert_one_line_error(result, "search.batch_size 64 is larger than the 32 images")


def test_model_summary_reports_the_darts_v2_paper_size() -> None:
    result = runner.invoke(app, ["model", "summary", "-g", "DARTS_V2", "--dataset", "cifar10", "--json"])
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    # DARTS reports 3.3 M parameters (without the auxiliary head) and FairDARTS 528 M multiply-adds.
    assert 3.25e6 < summary["params_without_aux"] < 3.40e6 < summary["params"]
    assert 520e6 < summary["multiply_adds"] < 540e6
    smaller = runner.invoke(
        app,
        ["model", "summary", "-g", "DARTS_V2", "--dataset", "cifar10", "--channels", "16", "--cells", "8", "--json"],
    )
    assert json.loads(smaller.stdout)["params"] < summary["params"] / 5


def test_model_summary_of_the_cdarts_imagenet_cell_matches_the_paper_range() -> None:
    result = runner.invoke(app, ["model", "summary", "-g", "CDARTS_IMAGENET", "--dataset", "imagenet", "--json"])
    summary = json.loads(result.stdout)
    # Paper: 6.1 +- 0.2 M parameters and 701 +- 32 M multiply-adds for its ImageNet cells.
    assert 5.9e6 < summary["params_without_aux"] < 6.4e6
    assert 669e6 < summary["multiply_adds"] < 733e6


def test_corrupt_alphas_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "alphas.pt"
    bad.write_bytes(b"\x00garbage")
    _assert_one_line_error(
        runner.invoke(app, ["stage", "derive-genotype", "-a", str(bad), "-o", str(tmp_path)]), "cannot read checkpoint"
    )


def test_genotype_show_json_convert_and_diff(tmp_path: Path) -> None:
    shown = runner.invoke(app, ["genotype", "show", "CDARTS_CIFAR", "--json"])
    assert shown.exit_code == 0
    assert Genotype.from_dict(json.loads(shown.stdout)) == reference_genotype("CDARTS_CIFAR")
    flat_file = tmp_path / "flat.txt"
    converted = runner.invoke(app, ["genotype", "convert", "DARTS_V2", "--to", "flat", "--out", str(flat_file)])
    assert converted.exit_code == 0 and flat_file.read_text().startswith("Genotype(normal=[('sep_conv_3x3', 0),")
    same = runner.invoke(app, ["genotype", "diff", "DARTS_V2", str(flat_file)])
    assert same.exit_code == 0 and "identical" in same.stdout
    different = runner.invoke(app, ["genotype", "diff", "DARTS_V1", "DARTS_V2", "--json"])
    assert different.exit_code == 1
    report = json.loads(different.stdout)
    assert not report["identical"] and {d["cell"] for d in report["differences"]} == {"normal", "reduce"}


def test_genotype_list_names_the_reference_cells() -> None:
    result = runner.invoke(app, ["genotype", "list"])
    rows = {tuple(line.split()) for line in result.stdout.splitlines()}
    assert result.exit_code == 0
    assert {("DARTS_V2", "darts"), ("CDARTS_CIFAR", "darts"), ("CDARTS_A", "chain"), ("CDARTS_B", "chain")} <= rows


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    cdarts = Path(sys.executable).parent / "cdarts"
    return subprocess.run([str(cdarts), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_console_script_runs_every_stage_on_the_tiny_config(tmp_path: Path) -> None:
    prep = _run("stage", "data-prep", "--config", "configs/tiny.yaml", "--out", str(tmp_path / "data"))
    assert prep.returncode == 0, prep.stderr
    search = _run(
        "stage",
        "search",
        "--config",
        "configs/tiny.yaml",
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "search"),
    )
    assert search.returncode == 0, search.stderr
    derive = _run(
        "stage",
        "derive-genotype",
        "--alphas",
        str(tmp_path / "search" / "alphas.pt"),
        "--out",
        str(tmp_path / "derived"),
    )
    assert derive.returncode == 0, derive.stderr
    derived = Genotype.from_dict(json.loads((tmp_path / "derived" / "genotype.json").read_text()))
    searched = Genotype.from_dict(json.loads((tmp_path / "search" / "genotype.json").read_text()))
    assert derived == searched  # deriving from the final alphas reproduces the search's genotype
    for name in ("normal.svg", "reduce.svg"):
        assert (tmp_path / "derived" / name).read_text().startswith("<svg")
    assert (tmp_path / "derived" / "alphas.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    retrain = _run(
        "stage",
        "retrain",
        "--config",
        "configs/tiny.yaml",
        "--data",
        str(tmp_path / "data"),
        "--genotype",
        str(tmp_path / "derived" / "genotype.json"),
        "--out",
        str(tmp_path / "model"),
    )
    assert retrain.returncode == 0, retrain.stderr
    assert "final test top-1" in retrain.stdout
    evaluate = _run(
        "stage",
        "evaluate",
        "--config",
        "configs/tiny.yaml",
        "--data",
        str(tmp_path / "data"),
        "--model",
        str(tmp_path / "model"),
        "--out",
        str(tmp_path / "eval"),
    )
    assert evaluate.returncode == 0, evaluate.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["genotype"] == derived.to_string() and metrics["same_dataset_as_training"]


def test_search_without_data_prepares_the_configs_data_once(tmp_path: Path) -> None:
    first = runner.invoke(app, ["stage", "search", "--config", TINY, "--out", str(tmp_path), "--no-progress"])
    assert first.exit_code == 0, first.output
    assert f"-> {tmp_path / 'data'}" in first.stdout and (tmp_path / "data" / "manifest.json").is_file()
    searched = Genotype.from_dict(json.loads((tmp_path / "genotype.json").read_text()))
    again = runner.invoke(app, ["stage", "search", "--config", TINY, "--out", str(tmp_path), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert "prepared" not in again.stdout and f"genotype: {searched.to_string()}" in again.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["model", "summary", "--channels", "0"], "Invalid value for '--channels'"),
        (["model", "summary", "--no-such-flag"], "No such option: --no-such-flag"),
        (["genotype", "show"], "Missing argument"),
    ],
)
def test_usage_errors_of_the_installed_command_are_one_line(args: list[str], fragment: str) -> None:
    """Click's own errors (range checks, unknown flags) through the console entry point, not the
    boxed multi-line form typer prints by default."""
    result = subprocess.run([sys.executable, "-m", "cdarts", *args], capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("cdarts: error: ") and fragment in lines[0], result.stderr
    assert lines[0].endswith("--help)")


def test_the_installed_command_keeps_exit_codes_and_help() -> None:
    version = subprocess.run([sys.executable, "-m", "cdarts", "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("cdarts ")
    bare_group = subprocess.run([sys.executable, "-m", "cdarts", "model"], capture_output=True, text=True, timeout=120)
    assert bare_group.returncode == 2 and "Usage: " in bare_group.stdout and "summary" in bare_group.stdout
    own_error = subprocess.run(
        [sys.executable, "-m", "cdarts", "genotype", "show", "NO_SUCH_GENOTYPE"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert own_error.returncode == 2 and own_error.stderr.startswith("cdarts: error: ")
