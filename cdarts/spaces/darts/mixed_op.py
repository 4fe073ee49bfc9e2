"""MixedOp: the continuous relaxation of one edge (softmax-weighted sum of all candidate ops)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cdarts.spaces.darts.candidates import NONE_PRIMITIVE
from cdarts.spaces.darts.operations import after_leading_relu, build_op
from cdarts.spaces.shared.batch_norm import BatchNorm2d


class MixedOp(nn.Module):
    """One search edge: ``sum_k w_k * op_k(x)`` over every candidate op.

    The ``none`` op contributes exactly zero to the sum and to every gradient, so it is kept in
    :attr:`ops` (its column still exists in the alphas) but skipped in the forward pass.

    With ``shared_relu`` the ops that begin with a ReLU (the separable and dilated convs, the
    stride-2 skip) share one rectified copy of ``x`` instead of computing four or five: the same
    values, so the same losses and gradients, with less work and memory.

    Args:
        channels: input and output width of the edge.
        stride: 2 on reduction-cell edges that leave a cell input, else 1.
        primitives: candidate op names, in alpha-column order.
        pool_batchnorm: append a non-affine BN to the pooling ops (DARTS does; CDARTS does not).
        shared_relu: rectify the input once for every op that starts with a ReLU.
    """

    def __init__(
        self,
        channels: int,
        stride: int,
        primitives: tuple[str, ...],
        pool_batchnorm: bool = False,
        shared_relu: bool = False,
    ) -> None:
        super().__init__()
        self.primitives = primitives
        self.candidates: list[nn.Module] = []
        for name in primitives:
            op = build_op(name, channels, stride, affine=False)
            if pool_batchnorm and "pool" in name:
                op = nn.Sequential(op, BatchNorm2d(channels, affine=False))
            self.candidates.append(op)
        self.ops = nn.ModuleList(self.candidates)
        self._active = [k for k, name in enumerate(primitives) if name != NONE_PRIMITIVE]
        # Plain list, not a ModuleList: these share the candidates' modules.
        self._after_relu = [after_leading_relu(op) if shared_relu else None for op in self.candidates]
        self._shares_relu = any(tail is not None for tail in self._after_relu)

    @property
    def active_columns(self) -> list[int]:
        """Alpha columns of the ops that run (all but ``none``), in the order of :meth:`candidate_outputs`."""
        return list(self._active)

    def candidate_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (N, C, H, W) -> the output of every op in :attr:`active_columns`, (N, C, H/s, W/s) each."""
        rectified = F.relu(x) if self._shares_relu else None
        outputs = []
        for k in self._active:
            tail = self._after_relu[k]
            outputs.append(tail(rectified) if tail is not None and rectified is not None else self.candidates[k](x))
        return outputs

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W); weights: (K,) softmax over the candidate ops -> (N, C, H/s, W/s)."""
        out: torch.Tensor | None = None
        for k, result in zip(self._active, self.candidate_outputs(x), strict=True):
            term = weights[k] * result
            out = term if out is None else out + term
        assert out is not None, "a mixed op needs at least one op besides 'none'"
        return out

    def op(self, index: int) -> nn.Module:
        """The candidate op in alpha column ``index``."""
        return self.candidates[index]
