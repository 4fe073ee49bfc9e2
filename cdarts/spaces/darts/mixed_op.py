"""MixedOp: the continuous relaxation of one edge (softmax-weighted sum of all candidate ops)."""

from __future__ import annotations

import torch
from torch import nn

from cdarts.spaces.darts.candidates import NONE_PRIMITIVE
from cdarts.spaces.darts.edge_input import EdgeInput
from cdarts.spaces.darts.operations import (
    DilConv,
    FactorizedReduce,
    after_leading_relu,
    build_op,
    split_final_batch_norm,
)
from cdarts.spaces.shared.batch_norm import BatchNorm2d
from cdarts.spaces.shared.phase_split_conv import PhaseSplitConv2d
from cdarts.spaces.shared.weighted_sum import NormalisedTerm, folds_into_sum


class MixedOp(nn.Module):
    """One search edge: ``sum_k w_k * op_k(x)`` over every candidate op.

    The ``none`` op contributes exactly zero to the sum and to every gradient, so it is kept in
    :attr:`ops` (its column still exists in the alphas) but skipped in the forward pass.

    With ``shared_relu`` the ops that begin with a ReLU (the separable and dilated convs, the
    stride-2 skip) share one rectified copy of ``x`` instead of computing four or five: the same
    values, so the same losses and gradients, with less work and memory. Given an
    :class:`EdgeInput` (the cell passes one per state), that copy, the pooled maps and the
    dilated convs' polyphase components are shared with every other edge leaving the same state;
    :meth:`candidate_terms` also leaves the final BatchNorm of each conv op to the node's
    :func:`weighted_sum`, which applies it without storing its output.

    Args:
        channels: input and output width of the edge.
        stride: 2 on reduction-cell edges that leave a cell input, else 1.
        primitives: candidate op names, in alpha-column order.
        pool_batchnorm: append a non-affine BN to the pooling ops (DARTS does; CDARTS does not).
        shared_relu: rectify the input once for every op that starts with a ReLU, and share what
            the ops derive from the input alone with the other edges of an :class:`EdgeInput`.
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
        self.stride = stride
        self.shared_relu = shared_relu
        # Plain list, not a ModuleList: these share the candidates' modules.
        self._after_relu = [after_leading_relu(op) if shared_relu else None for op in self.candidates]
        self._before_norm = [split_final_batch_norm(op) if shared_relu else None for op in self.candidates]

    @property
    def active_columns(self) -> list[int]:
        """Alpha columns of the ops that run (all but ``none``), in the order of :meth:`candidate_outputs`."""
        return list(self._active)

    def candidate_outputs(self, x: torch.Tensor | EdgeInput) -> list[torch.Tensor]:
        """x: (N, C, H, W), or an :class:`EdgeInput` of it -> the output of every op in
        :attr:`active_columns`, (N, C, H/s, W/s) each."""
        source = x if isinstance(x, EdgeInput) else EdgeInput(x)
        if not self.shared_relu:
            return [self.candidates[k](source.state) for k in self._active]
        outputs = [self._shared_output(k, source, fold_norm=False) for k in self._active]
        assert all(isinstance(out, torch.Tensor) for out in outputs)
        return outputs  # type: ignore[return-value]

    def candidate_terms(self, x: torch.Tensor | EdgeInput) -> list[torch.Tensor | NormalisedTerm]:
        """:meth:`candidate_outputs`, except that with ``shared_relu`` an op ending in a BatchNorm
        that :func:`weighted_sum` can apply itself hands over that BN's input instead."""
        source = x if isinstance(x, EdgeInput) else EdgeInput(x)
        if not self.shared_relu:
            return [self.candidates[k](source.state) for k in self._active]
        return [self._shared_output(k, source, fold_norm=True) for k in self._active]

    def _shared_output(self, k: int, source: EdgeInput, fold_norm: bool) -> torch.Tensor | NormalisedTerm:
        """Op ``k`` on ``source``, from what it shares with the other ops and edges of ``source``."""
        op = self.candidates[k]
        if isinstance(op, nn.MaxPool2d | nn.AvgPool2d):
            # No parameters, one configuration per primitive: the same map on every edge.
            pooled = source.derived(("pool", self.primitives[k], self.stride), lambda: op(source.state))
            assert pooled is not None
            return pooled
        split = self._before_norm[k]
        if split is not None:
            body, batch_norm = split
            convs = _phase_split_convs(op)
            phases = source.rectified_phases(self.stride) if convs is not None else None
            if convs is not None and phases is not None:
                depthwise, pointwise = convs
                if fold_norm and self.stride == 1 and folds_into_sum(batch_norm, phases):
                    # The 1x1 conv and the BN are the same per pixel: they run on the polyphase
                    # components, which the node sum reads in place (never interleaved).
                    components = pointwise(depthwise.forward_phases(phases, interleave=False))
                    return NormalisedTerm(components, batch_norm, polyphase=True)
                before_norm = pointwise(depthwise.forward_phases(phases))
            elif isinstance(op, FactorizedReduce):
                before_norm = op.reduced_from_subsamples(source.rectified_subsample(0), source.rectified_subsample(1))
            else:
                before_norm = body(source.rectified())
            if fold_norm and folds_into_sum(batch_norm, before_norm):
                return NormalisedTerm(before_norm, batch_norm)
            normalised: torch.Tensor = batch_norm(before_norm)
            return normalised
        tail = self._after_relu[k]
        if tail is not None:
            return tail(source.rectified())
        result: torch.Tensor = op(source.state)
        return result

    def forward(self, x: torch.Tensor | EdgeInput, weights: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) or its :class:`EdgeInput`; weights: (K,) softmax over the candidate
        ops -> (N, C, H/s, W/s)."""
        out: torch.Tensor | None = None
        for k, result in zip(self._active, self.candidate_outputs(x), strict=True):
            term = weights[k] * result
            out = term if out is None else out + term
        assert out is not None, "a mixed op needs at least one op besides 'none'"
        return out

    def op(self, index: int) -> nn.Module:
        """The candidate op in alpha column ``index``."""
        return self.candidates[index]


def _phase_split_convs(op: nn.Module) -> tuple[PhaseSplitConv2d, nn.Module] | None:
    """The depthwise and 1x1 convolutions of a dilated conv op whose depthwise one runs on
    polyphase components (see phase_split_conv.py); None for any other op."""
    if isinstance(op, DilConv) and isinstance(op[1], PhaseSplitConv2d):
        return op[1], op[2]
    return None
