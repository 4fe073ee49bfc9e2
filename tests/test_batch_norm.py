"""BatchNorm2d: PyTorch's batch norm, with its own training pass for awkward channels-last widths."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from cdarts.spaces.shared.batch_norm import BatchNorm2d, _takes_channels_last_path


def _pair(channels: int, affine: bool, momentum: float | None) -> tuple[nn.BatchNorm2d, BatchNorm2d]:
    torch.manual_seed(0)
    reference = nn.BatchNorm2d(channels, affine=affine, momentum=momentum).double()
    if affine:
        with torch.no_grad():
            reference.weight.uniform_(0.5, 1.5)
            reference.bias.uniform_(-1.0, 1.0)
    mine = BatchNorm2d(channels, affine=affine, momentum=momentum).double()
    mine.load_state_dict(reference.state_dict())
    return reference, mine


def _batch(channels: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(4, channels, 5, 6, generator=generator, dtype=torch.float64) * 3.0 + 2.0
    return x.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("channels", [36, 12, 16])  # 36 and 12 take the folded path, 16 PyTorch's kernel
@pytest.mark.parametrize(("affine", "momentum"), [(True, 0.1), (False, 0.1), (True, None)])
def test_training_steps_match_pytorch(channels: int, affine: bool, momentum: float | None) -> None:
    reference, mine = _pair(channels, affine, momentum)
    for step in range(3):
        x = _batch(channels, step).requires_grad_()
        x_mine = x.detach().clone().requires_grad_()
        upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(10 + step), dtype=torch.float64)
        expected, got = reference(x), mine(x_mine)
        (expected * upstream).sum().backward()
        (got * upstream).sum().backward()

        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        assert x_mine.grad is not None and x.grad is not None
        torch.testing.assert_close(x_mine.grad, x.grad, rtol=1e-10, atol=1e-12)
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert x_mine.grad.is_contiguous(memory_format=torch.channels_last)
        if affine:
            assert mine.weight.grad is not None and mine.bias.grad is not None
            torch.testing.assert_close(mine.weight.grad, reference.weight.grad, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(mine.bias.grad, reference.bias.grad, rtol=1e-10, atol=1e-12)
        for name, buffer in reference.named_buffers():
            torch.testing.assert_close(mine.get_buffer(name), buffer, rtol=1e-12, atol=1e-12)


def test_eval_mode_normalises_with_the_running_statistics() -> None:
    reference, mine = _pair(36, affine=True, momentum=0.1)
    for step in range(2):  # move the running statistics away from (0, 1)
        reference(_batch(36, step))
        mine(_batch(36, step))
    x = _batch(36, 5)
    torch.testing.assert_close(mine.eval()(x), reference.eval()(x), rtol=1e-12, atol=1e-12)
    assert int(mine.num_batches_tracked) == 2


def test_the_folded_path_gets_gradients_only_where_asked() -> None:
    _, mine = _pair(36, affine=True, momentum=0.1)
    mine.weight.requires_grad_(False)
    x = _batch(36, 0).requires_grad_()
    mine(x).square().sum().backward()
    assert x.grad is not None and mine.bias.grad is not None
    assert mine.weight.grad is None


def test_only_awkward_channels_last_widths_in_fp32_or_fp64_take_the_folded_path() -> None:
    def takes(channels: int, layout: torch.memory_format = torch.channels_last, size: int = 4, **kwargs: Any) -> bool:
        x = torch.zeros(2, channels, size, size, **kwargs).contiguous(memory_format=layout)
        return _takes_channels_last_path(x)

    assert takes(36) and takes(12) and takes(108) and takes(36, dtype=torch.float64)
    assert not takes(36, size=3)  # 18 rows do not fold into rows of 4 * 36
    assert not takes(16) and not takes(72) and not takes(144)  # PyTorch's kernel is the faster one there
    assert not takes(36, torch.contiguous_format) and not takes(36, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not takes(36)


@pytest.mark.parametrize("offset", [0.0, 10.0])
def test_fp32_on_the_folded_path_is_as_close_to_fp64_as_pytorchs_kernel(offset: float) -> None:
    """The input gradient is formed as a * g + b * x + c: a large mean must not cost accuracy."""
    generator = torch.Generator().manual_seed(3)
    x64 = torch.randn(8, 36, 8, 8, generator=generator, dtype=torch.float64) + offset
    x64 = x64.contiguous(memory_format=torch.channels_last)
    upstream = torch.randn(x64.shape, generator=generator, dtype=torch.float64)

    def run(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().clone().requires_grad_()
        out = module(x)
        out.backward(upstream.to(x.dtype))
        assert x.grad is not None
        return out.detach().double(), x.grad.double()

    truth = run(nn.BatchNorm2d(36).double(), x64)
    pytorch_fp32 = run(nn.BatchNorm2d(36), x64.float())
    mine_fp32 = run(BatchNorm2d(36), x64.float())
    assert _takes_channels_last_path(x64.float())
    for mine, theirs, exact in zip(mine_fp32, pytorch_fp32, truth, strict=True):
        scale = exact.abs().max()
        assert (mine - exact).abs().max() / scale <= max(2.0 * float((theirs - exact).abs().max() / scale), 1e-6)
