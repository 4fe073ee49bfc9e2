"""register component: the evaluated model -> an MLflow model version (alias challenger), and
the champion alias moved to it only if it beats the current champion."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from stages.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register(
    config: str,
    overrides: list,
    mlflow_parent_run_id: str,
    run_id: str,
    model: Input[Model],
    evaluation: Input[Artifact],
    registration: Output[Artifact],
) -> None:
    """Register and maybe promote (skipped, and said so, when tracking is disabled)."""
    import json
    import time
    from pathlib import Path

    from cdarts.config import load_config_spec
    from cdarts.runners.register import run_register
    from cdarts.runners.tracked_stage import tracked_stage
    from cdarts.tracking import MlflowTracker

    start = time.perf_counter()
    experiment = load_config_spec(config, overrides)
    out = Path(registration.path)
    if not experiment.tracking.enabled:
        out.mkdir(parents=True, exist_ok=True)
        (out / "registration.json").write_text(json.dumps({"decision": "skipped: tracking disabled"}))
        registration.metadata["decision"] = "skipped: tracking disabled"
        return
    with tracked_stage("register", experiment, mlflow_parent_run_id, run_id, strict=True) as tracker:
        assert isinstance(tracker, MlflowTracker)
        result = run_register(experiment, Path(model.path), Path(evaluation.path), tracker.uri, out, tracker)
    registration.metadata.update(
        {**{k: v for k, v in result.items() if v is not None}, "seconds": time.perf_counter() - start}
    )
