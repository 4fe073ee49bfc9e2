"""Runner of the ``compare_baselines`` stage: the searched architecture's evaluation against the
random baselines' -> comparison.json, comparison.md and comparison.html, and MLflow metrics."""

from __future__ import annotations

import json
from pathlib import Path

from cdarts.atomic_files import write_text_atomic
from cdarts.baseline_comparison import (
    ArchitectureScore,
    BaselineComparison,
    compare_with_random,
    comparison_html,
    comparison_markdown,
)
from cdarts.errors import DataError
from cdarts.runners.evaluate import METRICS_NAME
from cdarts.tracking import Tracker


def _score(label: str, evaluation_dir: Path) -> ArchitectureScore:
    path = evaluation_dir / METRICS_NAME
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        return ArchitectureScore.from_evaluation(label, metrics)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read the evaluation {path}: {error}") from None


def run_compare_baselines(
    searched_dir: Path, random_dirs: list[Path], out_dir: Path, tracker: Tracker | None = None
) -> BaselineComparison:
    """Compare the evaluation in ``searched_dir`` with those in ``random_dirs`` (labelled
    random-1, random-2, ... in the given order) and write the reports into ``out_dir``."""
    comparison = compare_with_random(
        _score("searched", searched_dir),
        [_score(f"random-{k + 1}", directory) for k, directory in enumerate(random_dirs)],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "comparison.md").write_text(comparison_markdown(comparison), encoding="utf-8")
    (out_dir / "comparison.html").write_text(comparison_html(comparison), encoding="utf-8")
    # Written last: the JSON marks the stage's output as complete.
    write_text_atomic(out_dir / "comparison.json", json.dumps(comparison.to_dict(), indent=2))
    if tracker is not None:
        tracker.log_metrics(comparison.metrics(), 0)
        tracker.set_tags({"cdarts.searched_rank": f"{comparison.rank} of {len(comparison.random) + 1}"})
        for name in ("comparison.json", "comparison.md", "comparison.html"):
            tracker.log_artifact(out_dir / name)
    return comparison
