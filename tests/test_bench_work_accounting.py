"""The benchmarks count a training step's work as 3 x its forward FLOPs (convolutions and matrix
products), never with FlopCounterMode around a backward pass, whose convolution-backward formula
counts a depthwise weight gradient ``groups`` times over."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from measure import training_step_flops


def test_a_depthwise_convolution_step_is_three_forward_passes() -> None:
    conv = torch.nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
    images = torch.randn(2, 16, 8, 8, requires_grad=True)
    forward = 2 * 2 * 16 * 8 * 8 * 9  # multiply-adds x 2 per output element of each channel
    assert training_step_flops(lambda: conv(images)) == 3 * forward
    with FlopCounterMode(display=False) as counter:  # what the benchmark must not do
        conv(images).sum().backward()
    assert counter.get_total_flops() > 5 * forward  # the inflated count: groups x the weight gradient


def test_linear_and_forward_only_counting_leaves_no_gradients() -> None:
    linear = torch.nn.Linear(32, 10)
    batch = torch.randn(4, 32)
    assert training_step_flops(lambda: linear(batch)) == 3 * 2 * 4 * 32 * 10
    assert linear.weight.grad is None
