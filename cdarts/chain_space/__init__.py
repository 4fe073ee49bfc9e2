"""The chain-structured (MobileNet-style) search space of CDARTS-a/b: blocks, networks and the
published architectures."""

from __future__ import annotations

from cdarts.chain_space.architectures import CHAIN_ARCHITECTURES, chain_architecture
from cdarts.chain_space.network import ChainNetwork, layer_specs

__all__ = ["CHAIN_ARCHITECTURES", "ChainNetwork", "chain_architecture", "layer_specs"]
