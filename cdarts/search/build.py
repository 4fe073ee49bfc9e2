"""Build the joint network of the configured search space from the typed config."""

from __future__ import annotations

from cdarts.config import ExperimentConfig
from cdarts.spaces.registry import get_space
from cdarts.spaces.shared.joint_base import JointModel

__all__ = ["build_search_model"]


def build_search_model(experiment: ExperimentConfig, in_channels: int, num_classes: int) -> JointModel:
    """The joint network of ``experiment.search_space`` for the experiment's image size."""
    return get_space(experiment.search_space).build_joint_network(experiment, in_channels, num_classes)
