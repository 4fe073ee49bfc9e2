"""From searched alphas to an architecture, in every search space: each space's rule
(``SearchSpace.derive``) on the probabilities of its alphas."""

from __future__ import annotations

import torch

from cdarts.alphas_file import AlphasFile
from cdarts.architecture import Architecture
from cdarts.spaces.registry import get_space


def alpha_probabilities(alphas_file: AlphasFile) -> dict[str, torch.Tensor]:
    """softmax(alphas) per row, with the chain space's mask applied."""
    return get_space(alphas_file.space).alpha_probabilities(alphas_file.alphas, alphas_file.layout)


def derive_architecture(alphas_file: AlphasFile) -> Architecture:
    """The architecture the alphas select, by the rule of the file's space."""
    space = get_space(alphas_file.space)
    return space.derive_from_alphas(alphas_file.alphas, alphas_file.candidates, alphas_file.layout)


def alpha_row_labels(alphas_file: AlphasFile) -> dict[str, list[str]]:
    """A label per row of each alphas tensor: ``j->i`` edges, or ``stage s slot l``."""
    return get_space(alphas_file.space).alpha_row_labels(alphas_file.layout)
