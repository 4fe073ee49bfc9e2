"""Build the joint network of the configured search space from the typed config."""

from __future__ import annotations

from cdarts.chain_space.joint_network import ChainJointNetwork
from cdarts.config import ExperimentConfig, SearchConfig
from cdarts.nasbench201.joint_network import Nb201JointNetwork
from cdarts.networks.joint_base import JointModel
from cdarts.networks.joint_network import JointNetwork
from cdarts.search_space.primitives import PRIMITIVES


def build_search_model(experiment: ExperimentConfig, in_channels: int, num_classes: int) -> JointModel:
    """The joint network of ``experiment.search_space`` for the experiment's image size."""
    search, image_size = experiment.search, experiment.data.image_size
    if experiment.search_space == "nasbench201":
        return Nb201JointNetwork(
            in_channels=in_channels,
            num_classes=num_classes,
            image_size=image_size,
            channels=experiment.nasbench201.channels,
            cells_per_stage=experiment.nasbench201.cells_per_stage,
            head_channels=search.head_channels,
            fix_heads=search.fix_heads,
            learnable_ensemble=search.learnable_ensemble,
            layout=experiment.nasbench201.layout,
        )
    if experiment.search_space == "chain":
        return ChainJointNetwork(
            in_channels=in_channels,
            num_classes=num_classes,
            image_size=image_size,
            stage_layers=experiment.chain.stage_layers,
            allow_skip=experiment.chain.allow_skip,
            dropout=experiment.chain.dropout,
            head_channels=search.head_channels,
            fix_heads=search.fix_heads,
            learnable_ensemble=search.learnable_ensemble,
        )
    return build_joint_network(search, in_channels, num_classes, image_size)


def build_joint_network(search: SearchConfig, in_channels: int, num_classes: int, image_size: int) -> JointNetwork:
    """The joint network for images of ``in_channels`` x ``image_size`` x ``image_size``."""
    return JointNetwork(
        stem=search.stem,
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size,
        init_channels=search.init_channels,
        stem_multiplier=search.stem_multiplier,
        search_cells=search.search_cells,
        eval_cells=search.eval_cells,
        n_nodes=search.n_nodes,
        primitives=PRIMITIVES,
        aggregation=search.node_aggregation,
        pool_batchnorm=search.pool_batchnorm,
        head_channels=search.head_channels,
        fix_heads=search.fix_heads,
        learnable_ensemble=search.learnable_ensemble,
        pool_transfer=search.pool_transfer,
        shared_relu=search.impl == "fast",
        channels_last=search.impl == "fast",
        activation_checkpointing=search.activation_checkpointing,
    )
