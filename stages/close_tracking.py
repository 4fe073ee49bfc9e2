"""close_tracking component: the pipeline's exit task, ending the MLflow parent run."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import PipelineTaskFinalStatus

from stages.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def close_tracking(config: str, overrides: list, mlflow_parent_run_id: str, status: PipelineTaskFinalStatus) -> str:
    """Runs after every other task, whether they succeeded or not."""
    from cdarts.config import load_config_spec
    from cdarts.runners.close_tracking import run_close_tracking

    outcome = run_close_tracking(load_config_spec(config, overrides), mlflow_parent_run_id, status.state)
    print(outcome)
    return outcome
