"""Random baselines: architectures drawn through each space's derivation rule, the comparison of
the searched architecture with them, the pipeline's ParallelFor (compiled and under kfp.local)
and the search-quality benchmark's smoke size."""

from __future__ import annotations

import collections
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import dsl
from typer.testing import CliRunner

from cdarts.baseline_comparison import (
    ArchitectureScore,
    compare_with_random,
    comparison_html,
    comparison_markdown,
)
from cdarts.cli.main import app
from cdarts.config import ExperimentConfig, load_config
from cdarts.errors import ConfigError
from cdarts.runners.sample_baselines import run_sample_baselines
from cdarts.spaces.darts.architecture import Genotype
from cdarts.spaces.darts.parser import reference_genotype
from cdarts.spaces.registry import get_space, space_names
from pipelines.compile import compile_pipeline
from pipelines.options import PipelineOptions
from tests.conftest import CONFIGS, REPO_ROOT

runner = CliRunner()


def _config(name: str) -> ExperimentConfig:
    return load_config(str(CONFIGS / ("tiny.yaml" if name == "darts" else f"tiny-{name}.yaml")))


def _sample(config: ExperimentConfig, count: int, seed: int) -> list[Any]:
    space = get_space(config.search_space)
    candidates = config.space_candidates()
    return space.sample_architectures(count, seed, candidates, space.alphas_layout(config))


# -- sampling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", space_names())
def test_samples_are_distinct_seeded_and_valid_architectures_of_the_space(name: str) -> None:
    config = _config(name)
    space = get_space(name)
    first = _sample(config, 6, seed=3)
    assert len({a.to_string() for a in first}) == 6
    assert [a.to_string() for a in _sample(config, 6, seed=3)] == [a.to_string() for a in first]
    assert [a.to_string() for a in _sample(config, 6, seed=4)] != [a.to_string() for a in first]
    for architecture in first:  # each one is an architecture of this space that parses and retrains
        assert space.architecture_from_dict(architecture.to_dict()) == architecture
        assert config.data.num_classes is not None
        spec = space.retrain_spec(config, config.data.channels, config.data.num_classes)
        assert space.build_retrain_network(architecture, spec) is not None


def test_darts_samples_keep_the_derivation_constraints_and_cover_the_ops_evenly() -> None:
    """Two inputs per node from distinct predecessors, never ``none``, and every other op about
    equally often (the draw favours no op)."""
    config = _config("darts")
    counts: collections.Counter[str] = collections.Counter()
    for genotype in _sample(config, 150, seed=0):
        assert isinstance(genotype, Genotype)
        for cell in (genotype.normal, genotype.reduce):
            for node, edges in enumerate(cell):
                inputs = [source for _, source in edges]
                assert len(inputs) == 2 and len(set(inputs)) == 2 and all(0 <= s < node + 2 for s in inputs)
                counts.update(op for op, _ in edges)
    assert "none" not in counts and len(counts) == 7
    expected = sum(counts.values()) / 7
    assert all(0.8 * expected < n < 1.2 * expected for n in counts.values()), counts


def test_a_space_with_too_few_distinct_architectures_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config("darts")
    space = get_space("darts")
    only = reference_genotype("DARTS_V2")
    monkeypatch.setattr(type(space), "derive", lambda self, probabilities, candidates, layout: only)
    with pytest.raises(ConfigError, match="random_baselines: the darts space gave only 1 distinct architectures, 2"):
        run_sample_baselines(config, 2)
    with pytest.raises(ConfigError, match="between 1 and 64"):
        run_sample_baselines(config, 0)


# -- the comparison -------------------------------------------------------------------------------


def _score(label: str, top1: float) -> ArchitectureScore:
    return ArchitectureScore(label, f"arch-{label}<b>", top1, 1000, 2_000_000)


def test_the_comparison_ranks_the_searched_score_among_the_random_ones() -> None:
    comparison = compare_with_random(
        _score("searched", 0.90), [_score("r1", 0.80), _score("r2", 0.95), _score("r3", 0.85)]
    )
    assert comparison.rank == 2  # one random architecture is better
    assert comparison.random_mean_top1 == pytest.approx(0.8666666, rel=1e-5)
    assert comparison.random_std_top1 == pytest.approx(0.0763763, rel=1e-5)  # sample std (n - 1)
    assert comparison.gap_in_std == pytest.approx((0.90 - 0.8666666) / 0.0763763, rel=1e-4)
    metrics = comparison.metrics()
    assert metrics["compare/searched_rank"] == 2 and metrics["compare/random_count"] == 3
    markdown = comparison_markdown(comparison)
    assert "| searched | 90.00 |" in markdown and "ranks 2 of 4" in markdown
    assert "arch-r1&lt;b&gt;" in comparison_html(comparison)  # genotype text is escaped in HTML


def test_a_comparison_without_spread_reports_no_gap_in_std() -> None:
    single = compare_with_random(_score("searched", 0.5), [_score("r1", 0.6)])
    assert single.rank == 2 and single.gap_in_std is None and "compare/gap_in_std" not in single.metrics()
    tied = compare_with_random(_score("searched", 0.7), [_score("r1", 0.7), _score("r2", 0.7)])
    assert tied.rank == 1 and tied.gap_in_std is None  # equal scores do not rank above the searched one
    with pytest.raises(ValueError, match="at least one"):
        compare_with_random(_score("searched", 0.7), [])
    with pytest.raises(ValueError, match="top1"):
        ArchitectureScore.from_evaluation("random-1", {"genotype": "x", "params_without_aux": 1, "multiply_adds": 1})


def test_the_component_bodies_sample_and_compare(tmp_path: Path) -> None:
    from stages import compare_baselines, sample_baselines

    config = (CONFIGS / "tiny.yaml").read_text()
    drawn = sample_baselines.python_func(config=config, overrides=[], seed=5, count=3)
    assert len(set(drawn)) == 3 and all(json.loads(text)["normal"] for text in drawn)
    evaluations = []
    for label, top1 in (("searched", 0.75), ("a", 0.5), ("b", 0.25), ("c", 1.0)):
        folder = tmp_path / label
        folder.mkdir()
        metrics = {"genotype": label, "top1": top1, "params_without_aux": 10, "multiply_adds": 20}
        (folder / "metrics.json").write_text(json.dumps(metrics))
        evaluations.append(dsl.Artifact(name="evaluation", uri=str(folder), metadata={}))
    outputs = {
        "report": dsl.Markdown(name="report", uri=str(tmp_path / "report.md"), metadata={}),
        "page": dsl.HTML(name="page", uri=str(tmp_path / "page.html"), metadata={}),
        "metrics": dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics"), metadata={}),
        "comparison": dsl.Artifact(name="comparison", uri=str(tmp_path / "comparison"), metadata={}),
    }
    compare_baselines.python_func(
        config=config,
        overrides=[],
        mlflow_parent_run_id="",
        run_id="local",
        searched=evaluations[0],
        random=evaluations[1:],
        **outputs,
    )
    result = json.loads((tmp_path / "comparison" / "comparison.json").read_text())
    assert result["rank"] == 2 and [r["label"] for r in result["random"]] == ["random-1", "random-2", "random-3"]
    assert outputs["metrics"].metadata["random_mean_top1"] == pytest.approx(0.5833333, rel=1e-5)
    assert "| random-3 | 100.00 |" in Path(outputs["report"].path).read_text()


# -- the pipeline ---------------------------------------------------------------------------------


def test_the_compiled_search_pipeline_fans_the_baselines_out_and_registers_only_the_searched_model(
    tmp_path: Path,
) -> None:
    out = tmp_path / "search.yaml"
    compile_pipeline("search", out, PipelineOptions())
    spec = next(yaml.safe_load_all(out.read_text()))
    assert spec["root"]["inputDefinitions"]["parameters"]["random_baselines"]["defaultValue"] == 0
    components = spec["components"]
    condition = spec["root"]["dag"]["tasks"]["exit-handler-1"]
    inner = components[condition["componentRef"]["name"]]["dag"]["tasks"]
    gate = inner["condition-2"]
    assert "random_baselines" in gate["triggerPolicy"]["condition"] and "> 0" in gate["triggerPolicy"]["condition"]
    baseline_tasks = components[gate["componentRef"]["name"]]["dag"]["tasks"]
    loop = next(task for name, task in baseline_tasks.items() if name.startswith("for-loop"))
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("sample-baselines-Output")
    assert "iteratorPolicy" not in loop  # a cluster runs them all at once unless baseline_parallelism says
    loop_tasks = components[loop["componentRef"]["name"]]["dag"]["tasks"]
    assert {"import-genotype", "retrain-2", "evaluate-2"} <= set(loop_tasks)
    assert loop_tasks["retrain-2"]["inputs"]["parameters"]["baseline"]["runtimeValue"]["constant"] is True
    compare = baseline_tasks["compare-baselines"]["inputs"]["artifacts"]
    assert compare["searched"]["componentInputArtifact"].endswith("evaluate-evaluation")
    assert "random" in compare  # the collected evaluations of the loop
    register = inner["register"]["inputs"]["artifacts"]
    assert register["model"]["taskOutputArtifact"]["producerTask"] == "retrain"
    assert register["evaluation"]["taskOutputArtifact"]["producerTask"] == "evaluate"
    assert not any(name.startswith("register") for name in (*baseline_tasks, *loop_tasks))
    executors = spec["deploymentSpec"]["executors"]  # a baseline trains on what the searched cell gets

    def resources(executor: str) -> str:  # each retrain reads its own sizing task's outputs
        return re.sub(r"size-gpu-task-\d+", "size-gpu-task", json.dumps(executors[executor]["container"]["resources"]))

    assert "accelerator" in resources("exec-retrain-2")
    assert resources("exec-retrain-2") == resources("exec-retrain")
    assert resources("exec-evaluate-2") == resources("exec-evaluate")


def test_random_baselines_are_refused_where_they_do_not_apply(tmp_path: Path) -> None:
    tiny = str(CONFIGS / "tiny.yaml")
    for args, fragment in (
        (["--pipeline", "retrain", "--random-baselines", "2"], "search pipeline only"),
        (["--random-baselines", "65"], "less than or equal"),
        (["--resume", str(tmp_path), "--random-baselines", "1"], "fixed when a run starts"),
    ):
        result = runner.invoke(app, ["run", "--config", tiny, "--runs-root", str(tmp_path), *args])
        assert result.exit_code == 2 and fragment in result.output, result.output
    assert not list(tmp_path.iterdir())
    bad = runner.invoke(
        app,
        [
            "stage",
            "retrain",
            "-c",
            tiny,
            "--data",
            str(tmp_path),
            "-g",
            "DARTS_V2",
            "--out",
            str(tmp_path / "o"),
            "--stage-name",
            "register",
        ],
    )
    assert bad.exit_code == 2 and "--stage-name" in bad.output and "retrain_baseline" in bad.output


@pytest.mark.slow
def test_a_local_run_with_three_baselines_compares_them_and_registers_one_model(
    mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDARTS_MLFLOW_TRACKING_URI", mlflow_server)
    stamp = time.time_ns()
    model_name = f"baselines-{stamp}"
    result = runner.invoke(
        app,
        [
            *("run", "--config", str(CONFIGS / "tiny.yaml"), "--runs-root", str(tmp_path), "--no-progress"),
            *("--random-baselines", "3", "--set", "tracking.enabled=true"),
            *("--set", f"tracking.experiment=baselines-{stamp}", "--set", f"tracking.registered_model={model_name}"),
        ],
    )
    assert result.exit_code == 0, result.output
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    summary = json.loads((run_dir / "summary.json").read_text())
    artifacts = {name: Path(path) for name, path in summary["artifacts"].items()}
    comparison = json.loads((artifacts["compare-baselines/comparison"] / "comparison.json").read_text())
    random_rows = comparison["random"]
    assert len({row["architecture"] for row in random_rows}) == 3
    assert comparison["searched"]["architecture"] == summary["genotype"]
    assert comparison["searched"]["top1"] == summary["top1"]
    assert comparison["rank"] == 1 + sum(row["top1"] > summary["top1"] for row in random_rows)
    assert (
        summary["random_baselines"]["rank"] == comparison["rank"] and summary["stage_seconds"]["random-baselines"] > 0
    )
    assert "| random-3 |" in artifacts["compare-baselines/report"].read_text()

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    (version,) = client.search_model_versions(f"name='{model_name}'")  # the searched model only
    assert client.get_run(version.run_id).data.tags["cdarts.genotype"] == summary["genotype"]
    parent = client.get_run(summary["mlflow_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    names = collections.Counter(run.info.run_name for run in children)
    assert names["retrain"] == 1 and names["retrain_baseline"] == 3 and names["evaluate_baseline"] == 3
    (compared,) = [run for run in children if run.info.run_name == "compare_baselines"]
    assert compared.data.metrics["compare/searched_rank"] == comparison["rank"]
    assert compared.data.metrics["compare/random_mean_top1"] == pytest.approx(comparison["random_mean_top1"])


def _bench(*arguments: str) -> subprocess.CompletedProcess[str]:
    script = REPO_ROOT / "bench" / "search_quality.py"
    return subprocess.run(
        [sys.executable, str(script), *arguments], capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.slow
def test_the_search_quality_benchmark_smoke_size_writes_comparable_rows(tmp_path: Path) -> None:
    completed = _bench("--smoke", "--out", str(tmp_path))
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads((tmp_path / "search_quality.json").read_text())
    rows = [result["searched"], *result["random"], *result["published"]]
    assert [row["label"] for row in result["published"]] == ["DARTS_V2", "CDARTS_CIFAR"]
    assert len(result["random"]) == 2 and len({row["architecture"] for row in rows}) == len(rows)
    for row in rows:
        assert row["budget"] == result["budget"] and len(row["top1_per_seed"]) == 2
        assert row["top1"] == pytest.approx(sum(row["top1_per_seed"]) / 2)
        assert row["params"] > 0 and row["multiply_adds"] > 0
    comparison = result["comparison"]
    assert comparison["rank"] == 1 + sum(r["top1"] > result["searched"]["top1"] for r in result["random"])
    assert (tmp_path / "search_quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = _bench("--smoke", "--out", str(tmp_path))  # the search and every row come from the first run
    assert again.returncode == 0 and again.stderr.count("reused") == len(rows) * 2, again.stderr[-2000:]
    assert json.loads((tmp_path / "search_quality.json").read_text())["comparison"] == comparison
    for unfinished in ("random-2", "CDARTS_CIFAR"):  # as if a long run were still training these
        shutil.rmtree(tmp_path / "rows" / unfinished)
    partial = _bench("--smoke", "--out", str(tmp_path), "--finished-only")
    assert partial.returncode == 0 and "retrain" not in partial.stderr, partial.stderr[-2000:]
    report = json.loads((tmp_path / "search_quality.json").read_text())
    assert report["unfinished_rows"] == ["random-2", "CDARTS_CIFAR"] and len(report["random"]) == 1
    assert report["comparison"]["random_mean_top1"] == result["random"][0]["top1"]
    missing = _bench("--cpu", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "cpu"))
    assert missing.returncode == 1 and "dataset-fashion-mnist" in missing.stderr
    assert "Traceback" not in missing.stderr
