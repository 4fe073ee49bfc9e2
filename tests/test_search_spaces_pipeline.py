"""Both extra search spaces end to end in the real pipeline (kfp.local, tiny configs): search,
derive, retrain, evaluate; the NAS-Bench-201 look-up logged per cycle; a chain genotype retrained
through the retrain pipeline."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cdarts.architecture import read_architecture_file, resolve_architecture
from cdarts.cli.main import app
from cdarts.config import load_config
from cdarts.model_file import load_model
from cdarts.runners.retrain import retrain_spec
from cdarts.spaces.chain.architecture import ChainArchitecture
from cdarts.spaces.nasbench201.architecture import Nb201Genotype
from cdarts.spaces.nasbench201.candidates import NB201_OPS
from tests.conftest import CONFIGS

runner = CliRunner()
pytestmark = pytest.mark.slow


def _run(tmp_path: Path, *args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["run", *args, "--runs-root", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    run_dir = Path(result.stdout.strip().splitlines()[-1])  # the run directory is the last line
    return dict(json.loads((run_dir / "summary.json").read_text()))


def _conv_count(genotype: Nb201Genotype) -> float:
    return float(sum(op.startswith("nor_conv") for _, _, op in genotype.edges()))


def _write_benchmark(path: Path) -> None:
    """Every one of the 5^6 cells, with a made-up accuracy that the test can recompute."""
    table = {}
    for ops in itertools.product(NB201_OPS, repeat=6):
        genotype = Nb201Genotype((ops[0:1], ops[1:3], ops[3:6]))
        table[genotype.to_arch_string()] = {"cifar10-test": 50.0 + _conv_count(genotype), "cifar100-test": 1.0}
    path.write_text(json.dumps(table))


def test_nasbench201_search_pipeline_runs_end_to_end_and_logs_the_lookup(tmp_path: Path) -> None:
    _write_benchmark(tmp_path / "bench.json")
    summary = _run(
        tmp_path,
        "--config",
        str(CONFIGS / "tiny-nasbench201.yaml"),
        "--set",
        f"nasbench201.benchmark_file={tmp_path / 'bench.json'}",
    )
    artifacts = {name: Path(uri) for name, uri in summary["artifacts"].items()}
    searched = read_architecture_file(artifacts["search/supernet"] / "genotype.json")
    derived = read_architecture_file(artifacts["derive-genotype/genotype"] / "genotype.json")
    assert isinstance(searched, Nb201Genotype) and derived == searched
    assert summary["genotype"] == searched.to_arch_string()
    assert [Path(p).name for p in summary["cell_diagrams"]] == ["cell.svg"]
    assert "NAS-Bench-201 cell" in artifacts["derive-genotype/cells"].read_text()

    cycles = sorted((artifacts["search/supernet"] / "genotypes").glob("cycle_*.json"))
    assert len(cycles) == 2  # tiny: 1 S warm-up epoch + 2 cycles of one joint epoch each
    logged = [json.loads(line) for line in (artifacts["search/supernet"] / "metrics.jsonl").read_text().splitlines()]
    lookups = [entry for entry in logged if "benchmark/found" in entry]
    assert len(lookups) == len(cycles)
    for cycle_file, entry in zip(cycles, lookups, strict=True):
        cycle = json.loads(cycle_file.read_text())
        expected = 50.0 + _conv_count(Nb201Genotype.from_arch_string(cycle["genotype_string"]))
        assert cycle["benchmark"]["cifar10-test"] == entry["benchmark/cifar10-test"] == expected
        assert entry["step"] == cycle["cycle"] and entry["benchmark/found"] == 1.0

    model, _ = load_model(artifacts["retrain/model"])
    assert model.genotype == searched
    evaluation = json.loads((artifacts["evaluate/evaluation"] / "metrics.json").read_text())
    assert evaluation["params"] == sum(p.numel() for p in model.parameters()) == summary["params"]
    assert 0.0 <= summary["top1"] <= 1.0


def test_chain_search_pipeline_runs_end_to_end(tmp_path: Path) -> None:
    summary = _run(tmp_path, "--config", str(CONFIGS / "tiny-chain.yaml"))
    artifacts = {name: Path(uri) for name, uri in summary["artifacts"].items()}
    searched = read_architecture_file(artifacts["search/supernet"] / "genotype.json")
    assert isinstance(searched, ChainArchitecture)
    assert [len(stage) for stage in searched.choices][2] in (1, 2)  # S has two slots there; skip may drop one
    assert summary["genotype"] == searched.to_string()
    assert [Path(p).name for p in summary["cell_diagrams"]] == ["layers.svg"]
    assert read_architecture_file(artifacts["derive-genotype/genotype"] / "genotype.json") == searched
    model, _ = load_model(artifacts["retrain/model"])
    assert model.genotype == searched
    assert json.loads((artifacts["evaluate/evaluation"] / "metrics.json").read_text())["multiply_adds"] > 0


def test_the_retrain_pipeline_trains_a_published_chain_architecture(tmp_path: Path) -> None:
    config = CONFIGS / "tiny-chain.yaml"
    summary = _run(tmp_path, "--pipeline", "retrain", "--genotype", "CDARTS_B", "--config", str(config))
    assert summary["genotype"] == "chain:3420-5240-4322-1301-2442"
    assert set(summary["stage_seconds"]) == {"data-prep", "import-genotype", "retrain", "evaluate", "register"}
    model, _ = load_model(Path(summary["artifacts"]["retrain/model"]))
    spec = retrain_spec(load_config(str(config)), resolve_architecture("CDARTS_B"), 3, 4)
    assert model.spec == spec
    # CDARTS-b's 6,465,224 parameters at 1000 classes, minus the classifier's 996 extra rows.
    assert summary["params"] == 6_465_224 - 996 * (1280 + 1)
