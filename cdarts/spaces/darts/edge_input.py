"""A search-cell state as every edge that leaves it reads it.

Each state of a search cell feeds several edges (a cell input all ``n_nodes`` of them, node i
the ``n_nodes - 1 - i`` after it), and on each the candidate ops read the same things derived
from the state: the conv ops ``relu(state)``, the pooling ops the pooled state (no parameters:
the same map on every edge of one stride), the dilated convs the polyphase components of
``relu(state)``. Computed once per state instead of once per edge and op, they are shared: the
same values and gradients (autograd sums a shared tensor's gradient over its readers, as the
chain rule does over the copies), with fewer passes over the state, fewer small kernel calls and
fewer activations kept for backward.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch
import torch.nn.functional as F

from cdarts.spaces.shared.gradient_layout import with_dense_gradient
from cdarts.spaces.shared.phase_split_conv import phase_split_input


class EdgeInput:
    """One state and what the edges leaving it derive from it, each computed on first use.

    Args:
        state: (N, C, H, W), the preprocessed cell input or a node output.
    """

    def __init__(self, state: torch.Tensor) -> None:
        self.state = state
        self._derived: dict[Hashable, torch.Tensor | None] = {}

    def derived(self, key: Hashable, compute: Callable[[], torch.Tensor | None]) -> torch.Tensor | None:
        """The tensor stored under ``key``, computed by ``compute`` the first time it is asked
        for; ``key`` must name a function of the state alone (no parameters)."""
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]

    def rectified(self) -> torch.Tensor:
        """``relu(state)``."""
        result = self.derived("relu", lambda: F.relu(self.state))
        assert result is not None
        return result

    def rectified_phases(self, stride: int) -> torch.Tensor | None:
        """What a phase-split dilated convolution of ``stride`` reads of ``relu(state)``: at
        stride 2 its even subsample (shared with the stride-2 skips; the identity holds in any
        layout), at stride 1 :func:`phase_split_input`'s components, or None where the
        convolution runs undivided."""
        if stride == 2:
            return self.rectified_subsample(0)
        return self.derived(("phases", stride), lambda: phase_split_input(self.rectified(), stride))

    def rectified_subsample(self, offset: int) -> torch.Tensor:
        """``relu(state)[:, :, offset::2, offset::2]`` (a view; offset 0 or 1), as the
        stride-2 skip (FactorizedReduce) and the stride-2 dilated convs read it."""
        # One dense-gradient node for both views: their backward scatters into new tensors,
        # summed there and turned back into the state's layout once.
        dense = self.derived("dense_rectified", lambda: with_dense_gradient(self.rectified()))
        assert dense is not None
        result = self.derived(("subsample", offset), lambda: dense[:, :, offset::2, offset::2])
        assert result is not None
        return result
