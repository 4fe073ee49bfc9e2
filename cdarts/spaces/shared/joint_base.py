"""What every search space's joint network shares: the CDARTS ensemble forward and the
parameter groups the cyclic search optimises.

A joint network holds a stem shared by S and E, the search network S (with the alphas) and its
classifier, the evaluation network E (``eval_network``, rebuilt from the genotype every cycle),
E's persistent classifier, the weight pool E inherits from, two distillation heads shared by S
and E at aligned stage boundaries, and the ensemble logits weighting the three heads of each
network. Subclasses supply the space-specific parts; the cyclic search sees only this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

Branch = Literal["search", "eval"]


@dataclass
class NetworkOutput:
    """logits: (N, K) final logits; ensemble: (3N, K) the three weighted head outputs, stacked
    along the batch dimension (first head, second head, final classifier)."""

    logits: torch.Tensor
    ensemble: torch.Tensor | None


@dataclass
class BranchFeatures:
    """What one branch computed: the two stage outputs the heads read, and its final logits."""

    head_inputs: tuple[torch.Tensor, torch.Tensor]
    logits: torch.Tensor


class JointModel(nn.Module, ABC):
    """Base of the joint networks. Subclasses set ``stem``, ``distill_heads``,
    ``ensemble_logits``, ``eval_network`` and ``candidates`` (the alphas' column names)."""

    stem: nn.Module
    distill_heads: nn.ModuleList
    ensemble_logits: nn.Parameter
    eval_network: nn.Module | None
    candidates: tuple[str, ...]

    def init_ensemble(self, learnable: bool, fix_heads: bool) -> None:
        """Ensemble logits init 0.333 * U(0, 1) (learnable) or equal weights; optionally freeze heads."""
        if fix_heads:
            self.distill_heads.requires_grad_(False)
        self.ensemble_logits = nn.Parameter(
            0.333 * torch.rand(3) if learnable else torch.zeros(3), requires_grad=learnable
        )

    # -- what a space provides ---------------------------------------------------------------------

    @abstractmethod
    def branch_features(self, x: torch.Tensor, branch: Branch) -> BranchFeatures:
        """Run the stem and S or E on images x: (N, C, H, W)."""

    @abstractmethod
    def current_genotype(self) -> Any:
        """The architecture derived from the current alphas (the space's genotype type)."""

    @abstractmethod
    def rebuild_eval_network(self, genotype: Any) -> nn.Module:
        """Build a fresh E for ``genotype`` and initialise it from the pool."""

    @abstractmethod
    def write_back_to_pool(self) -> None:
        """Store E's weights in the pool (end of every cycle)."""

    @abstractmethod
    def named_alphas(self) -> dict[str, torch.Tensor]:
        """The architecture parameters by name, each (rows, len(candidates))."""

    def alpha_probabilities(self) -> dict[str, torch.Tensor]:
        """softmax(alphas) per edge or slot (a space with masked candidates overrides this)."""
        return {name: torch.softmax(a.detach().float(), dim=-1) for name, a in self.named_alphas().items()}

    @abstractmethod
    def search_module_parameters(self) -> Iterator[nn.Parameter]:
        """S's own weights: its cells or layers and its classifier (no alphas)."""

    @abstractmethod
    def eval_module_parameters(self) -> Iterator[nn.Parameter]:
        """E's own weights: the current E and E's persistent classifier."""

    # -- parameter groups ------------------------------------------------------------------------

    def require_eval(self) -> nn.Module:
        if self.eval_network is None:
            raise RuntimeError("the evaluation network has not been built yet")
        return self.eval_network

    def arch_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.named_alphas().values() if isinstance(p, nn.Parameter)]

    def _shared_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.stem.parameters()
        yield from (p for p in self.distill_heads.parameters() if p.requires_grad)
        if self.ensemble_logits.requires_grad:
            yield self.ensemble_logits

    def search_weight_parameters(self) -> list[nn.Parameter]:
        """What the W_S optimiser steps: stem, S, S classifier, heads, ensemble."""
        return [*self.search_module_parameters(), *self._shared_parameters()]

    def eval_weight_parameters(self) -> list[nn.Parameter]:
        """What the W_E optimiser steps: stem, E, E classifier, heads, ensemble."""
        return [*self.eval_module_parameters(), *self._shared_parameters()]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not an alpha (pool included); disjoint from the alphas."""
        arch_ids = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch_ids]

    # -- forward ---------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, branch: Branch, with_ensemble: bool = True) -> NetworkOutput:
        """S (``branch="search"``) or E (``"eval"``) on x: (N, C, H, W); with the ensemble of
        softmax(ensemble_logits)-weighted head and classifier logits."""
        features = self.branch_features(x, branch)
        if not with_ensemble:
            return NetworkOutput(features.logits, None)
        head_logits = [head(out) for head, out in zip(self.distill_heads, features.head_inputs, strict=True)]
        weights = torch.softmax(self.ensemble_logits, dim=0)
        ensemble = torch.cat([w * z for w, z in zip(weights, [*head_logits, features.logits], strict=True)], dim=0)
        return NetworkOutput(features.logits, ensemble)
