"""The networks rectify each cell output once for the two cells that read it: the same values and
gradients as every cell rectifying its own inputs (the plain ``cell(s0, s1)`` chain)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cdarts.spaces.darts.candidates import PRIMITIVES
from cdarts.spaces.darts.eval_network import EvalNetwork
from cdarts.spaces.darts.layout import plan_cells
from cdarts.spaces.darts.parser import reference_genotype
from cdarts.spaces.darts.search_network import SearchNetwork

CELLS = (2, 2, 2)  # reductions after the stem (ImageNet) and between stages: FactorizedReduce inputs


def _plain_chain(network: nn.Module, s0: torch.Tensor, s1: torch.Tensor) -> list[torch.Tensor]:
    """Every cell on its raw inputs, each preprocessor applying its own ReLU."""
    outputs = []
    for index, cell in enumerate(network.cells):
        if isinstance(network, SearchNetwork):
            alphas = network.alphas_reduce if cell.reduction else network.alphas_normal
            out = cell(s0, s1, torch.softmax(alphas, dim=-1))
        else:
            out = cell(s0, s1)
        s0, s1 = s1, out
        if index in network.stage_ends:
            outputs.append(out)
    return outputs


def _stem_outputs(stem: str, channels: int, same: bool) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    s1 = torch.randn(2, channels, 8, 8, generator=generator, dtype=torch.float64)
    s0 = s1 if same else torch.randn(2, channels, 16, 16, generator=generator, dtype=torch.float64)
    return s0.requires_grad_(), s1 if same else s1.requires_grad_()


def _build(kind: str, stem: str) -> nn.Module:
    torch.manual_seed(0)
    plan = plan_cells(CELLS, 4, 12, 4, stem)  # type: ignore[arg-type]
    if kind == "search":
        return SearchNetwork(plan, 4, PRIMITIVES, shared_relu=True, fused_sums=True).double()
    return EvalNetwork(reference_genotype("CDARTS_CIFAR"), plan, affine=True).double()


@pytest.mark.parametrize("kind", ["search", "eval"])
@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_rectifying_once_matches_the_plain_cell_chain(kind: str, stem: str) -> None:
    network = _build(kind, stem)
    s0, s1 = _stem_outputs(stem, 12, same=stem == "cifar")
    upstream = torch.Generator().manual_seed(2)

    results = []
    for run in (network.forward, lambda a, b: _plain_chain(network, a, b)):
        network.zero_grad(set_to_none=True)
        for leaf in (s0, s1):
            leaf.grad = None
        torch.manual_seed(3)  # both runs draw the same random numbers (there is no drop-path here)
        outputs = run(s0, s1)
        loss = sum(
            (out * torch.randn(out.shape, generator=upstream.manual_seed(i), dtype=out.dtype)).sum()
            for i, out in enumerate(outputs)
        )
        loss.backward()  # type: ignore[union-attr]
        grads = [p.grad.clone() for p in network.parameters() if p.grad is not None]
        inputs = [leaf.grad.clone() for leaf in {id(s0): s0, id(s1): s1}.values() if leaf.grad is not None]
        results.append(([out.detach() for out in outputs], grads, inputs))

    (fast_out, fast_grads, fast_inputs), (plain_out, plain_grads, plain_inputs) = results
    assert len(fast_out) == 3 and len(fast_grads) == len(plain_grads) > 0 and len(fast_inputs) == len(plain_inputs) > 0
    for got, expected in zip(fast_out + fast_grads + fast_inputs, plain_out + plain_grads + plain_inputs, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_the_cifar_stem_output_is_rectified_once_for_the_first_two_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    network = _build("eval", "cifar")
    s0, s1 = _stem_outputs("cifar", 12, same=True)
    rectified_stem = []
    relu = torch.nn.functional.relu

    def counting_relu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        if x is s1:
            rectified_stem.append(x)
        return relu(x, inplace=inplace)

    monkeypatch.setattr(torch.nn.functional, "relu", counting_relu)
    network(s0, s1)
    assert len(rectified_stem) == 1  # not once per preprocessor (three of them read it)
