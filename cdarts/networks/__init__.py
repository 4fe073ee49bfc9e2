"""Networks of the cyclic search: S, E, the weight pool, and the joint module holding them."""

from __future__ import annotations

from cdarts.networks.eval_network import EvalNetwork
from cdarts.networks.joint_network import JointNetwork, NetworkOutput
from cdarts.networks.search_network import SearchNetwork
from cdarts.networks.weight_pool import WeightPool

__all__ = ["EvalNetwork", "JointNetwork", "NetworkOutput", "SearchNetwork", "WeightPool"]
