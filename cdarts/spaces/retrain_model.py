"""The retrain networks of every space, as one type."""

from __future__ import annotations

from cdarts.spaces.chain.retrain_network import ChainRetrainNetwork
from cdarts.spaces.darts.retrain_network import RetrainNetwork
from cdarts.spaces.nasbench201.retrain_network import Nb201RetrainNetwork

RetrainModel = RetrainNetwork | Nb201RetrainNetwork | ChainRetrainNetwork
"""Each has ``genotype``, ``spec``, ``set_drop_path_prob``, ``parameter_counts`` and a forward
returning ``(logits, aux_logits or None)``."""
