"""The retrain network of any search space's architecture."""

from __future__ import annotations

from cdarts.architecture import Architecture
from cdarts.chain_space.architectures import ChainArchitecture
from cdarts.chain_space.retrain_network import ChainRetrainNetwork
from cdarts.nasbench201.genotype import Nb201Genotype
from cdarts.nasbench201.retrain_network import Nb201RetrainNetwork
from cdarts.networks.retrain_network import RetrainNetwork, RetrainSpec

RetrainModel = RetrainNetwork | Nb201RetrainNetwork | ChainRetrainNetwork
"""Each has ``genotype``, ``spec``, ``set_drop_path_prob``, ``parameter_counts`` and a forward
returning ``(logits, aux_logits or None)``."""


def build_retrain_network(genotype: Architecture, spec: RetrainSpec) -> RetrainModel:
    if isinstance(genotype, Nb201Genotype):
        return Nb201RetrainNetwork(genotype, spec)
    if isinstance(genotype, ChainArchitecture):
        return ChainRetrainNetwork(genotype, spec)
    return RetrainNetwork(genotype, spec)
