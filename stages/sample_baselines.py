"""sample_baselines component: the random architectures the searched one is compared with."""

from typing import List  # noqa: UP035 - KFP reads typing.List for a list output

# No `from __future__ import annotations` here: KFP reads the real annotation objects.
from kfp import dsl

from stages.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def sample_baselines(config: str, overrides: list, seed: int, count: int) -> List[str]:  # noqa: UP006
    """``count`` distinct random architectures of the configured space as JSON texts, drawn with
    the space's derivation rule from the run's seed. Cacheable: the same inputs give the same list."""
    from cdarts.config import load_config_spec, pipeline_overrides
    from cdarts.runners.sample_baselines import run_sample_baselines

    experiment = load_config_spec(config, [*overrides, *pipeline_overrides(seed=seed)])
    return run_sample_baselines(experiment, count)
