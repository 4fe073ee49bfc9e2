"""Build the joint network from the typed config."""

from __future__ import annotations

from cdarts.config import SearchConfig
from cdarts.networks.joint_network import JointNetwork
from cdarts.search_space.primitives import PRIMITIVES


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
