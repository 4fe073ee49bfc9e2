"""The registered search spaces, by config name and by architecture type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdarts.errors import GenotypeError
from cdarts.spaces.base import SearchSpace
from cdarts.spaces.chain.space import ChainSpace
from cdarts.spaces.darts.space import DartsSpace
from cdarts.spaces.nasbench201.space import NasBench201Space
from cdarts.spaces.shared.retrain_model import RetrainModel
from cdarts.spaces.shared.retrain_spec import RetrainSpec

if TYPE_CHECKING:
    from cdarts.architecture import Architecture

_SPACES: dict[str, SearchSpace] = {space.name: space for space in (DartsSpace(), NasBench201Space(), ChainSpace())}


def space_names() -> tuple[str, ...]:
    return tuple(_SPACES)


def get_space(name: str) -> SearchSpace:
    """The space registered as ``name`` (a config's ``search_space``, an alphas file's space)."""
    try:
        return _SPACES[name]
    except KeyError:
        raise GenotypeError(f"unknown search space {name!r}; known: {', '.join(_SPACES)}") from None


def space_of(architecture: Architecture) -> SearchSpace:
    """The space an architecture belongs to."""
    for space in _SPACES.values():
        if isinstance(architecture, space.architecture_type):
            return space
    raise GenotypeError(f"{type(architecture).__name__} is no architecture of a registered search space")


def build_retrain_network(architecture: Architecture, spec: RetrainSpec) -> RetrainModel:
    """The retrain network of any space's architecture."""
    return space_of(architecture).build_retrain_network(architecture, spec)
