"""Runner of the ``sample_baselines`` stage: the random architectures a search is measured against."""

from __future__ import annotations

from cdarts.config import ExperimentConfig
from cdarts.errors import ConfigError
from cdarts.spaces.registry import get_space

# Added to the experiment's seed: the draws share no random stream with the search itself.
BASELINE_SEED_OFFSET = 10_000
MAX_RANDOM_BASELINES = 64


def run_sample_baselines(experiment: ExperimentConfig, count: int) -> list[str]:
    """``count`` distinct random architectures of the experiment's space, as JSON texts (seeded
    by the experiment's seed; drawn through the space's own derivation rule)."""
    if not 1 <= count <= MAX_RANDOM_BASELINES:
        raise ConfigError(f"random_baselines must be between 1 and {MAX_RANDOM_BASELINES}, got {count}")
    space = get_space(experiment.search_space)
    candidates = experiment.space_candidates()
    try:
        drawn = space.sample_architectures(
            count, experiment.seed + BASELINE_SEED_OFFSET, candidates, space.alphas_layout(experiment)
        )
    except ValueError as error:
        raise ConfigError(f"random_baselines: {error}") from None
    return [architecture.to_json() for architecture in drawn]
