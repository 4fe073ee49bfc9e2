"""The retrain networks of every space, as one type."""

from __future__ import annotations

from cdarts.chain_space.retrain_network import ChainRetrainNetwork
from cdarts.nasbench201.retrain_network import Nb201RetrainNetwork
from cdarts.networks.retrain_network import RetrainNetwork

RetrainModel = RetrainNetwork | Nb201RetrainNetwork | ChainRetrainNetwork
"""Each has ``genotype``, ``spec``, ``set_drop_path_prob``, ``parameter_counts`` and a forward
returning ``(logits, aux_logits or None)``."""
