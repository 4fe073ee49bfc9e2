"""The native depthwise weight gradient: the same values as PyTorch's kernels (fp64), taken only
where it applies, and a plain fallback whenever the kernel cannot be built or is turned off."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cdarts.kernels import native_library
from cdarts.kernels.depthwise_weight_grad import depthwise_weight_grad, native_weight_grad_available
from cdarts.spaces.shared.depthwise_conv import (
    FastDepthwiseConv2d,
    depthwise_conv2d,
    use_fast_depthwise,
    weight_gradient_kind,
)
from tests.gradient_checks import assert_same_values_and_gradients

CHANNELS_LAST = torch.channels_last


@pytest.fixture
def fresh_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """An empty kernel cache and a loader that has loaded nothing yet (restored afterwards)."""
    monkeypatch.setenv("CDARTS_KERNEL_CACHE", str(tmp_path / "kernels"))
    native_library.load_library.cache_clear()
    yield tmp_path / "kernels"
    native_library.load_library.cache_clear()


def _onednn_weight_grad(x: torch.Tensor, grad: torch.Tensor, kernel: int, stride: int, padding: int, dilation: int):
    weight = torch.zeros(x.shape[1], 1, kernel, kernel, dtype=x.dtype)
    return torch.ops.aten.convolution_backward(
        grad, x, weight, None, [stride] * 2, [padding] * 2, [dilation] * 2, False, [0, 0], x.shape[1],
        [False, True, False],
    )[1]  # fmt: skip


def test_the_kernel_builds_here() -> None:
    # CI and the images have a C++ compiler: a silent fallback there would hide a broken build.
    assert native_weight_grad_available(torch.float32) and native_weight_grad_available(torch.float64)


@pytest.mark.parametrize(
    ("channels", "size", "kernel", "stride", "dilation"),
    [
        (16, 9, 5, 1, 1),
        (36, 7, 5, 2, 1),  # 16 + 16 + 4 channel blocks
        (29, 8, 7, 1, 1),  # 16 + 8 + 4 + 1
        (3, 6, 3, 2, 1),
        (8, 10, 5, 1, 2),
        (20, 4, 5, 1, 1),  # every output column touches the border
        (5, 1, 5, 1, 1),
    ],
)
def test_native_weight_gradient_equals_pytorchs(
    channels: int, size: int, kernel: int, stride: int, dilation: int
) -> None:
    generator = torch.Generator().manual_seed(channels + size)
    padding = dilation * (kernel // 2)
    x = torch.randn(3, channels, size, size + 1, generator=generator, dtype=torch.float64)
    x = x.contiguous(memory_format=CHANNELS_LAST)
    out_shape = F.conv2d(x, torch.zeros(channels, 1, kernel, kernel, dtype=x.dtype), None, stride, padding, dilation,
                         channels).shape  # fmt: skip
    grad = torch.randn(out_shape, generator=generator, dtype=torch.float64).contiguous(memory_format=CHANNELS_LAST)
    got = depthwise_weight_grad(x, grad, kernel, stride, padding, dilation)
    assert got is not None and got.shape == (channels, 1, kernel, kernel)
    torch.testing.assert_close(got, _onednn_weight_grad(x, grad, kernel, stride, padding, dilation), rtol=1e-12,
                               atol=1e-12)  # fmt: skip


def test_strided_views_and_nchw_tensors_are_read_correctly() -> None:
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(2, 24, 12, 12, generator=generator, dtype=torch.float64).contiguous(memory_format=CHANNELS_LAST)
    view = base[:, :, ::2, 1::2]  # channels dense, rows and columns strided (the fast search's subsampling)
    grad_nchw = torch.randn(2, 24, 6, 6, generator=generator, dtype=torch.float64)  # NCHW: copied to channels-last
    got = depthwise_weight_grad(view, grad_nchw, 5, 1, 2, 1)
    assert got is not None
    torch.testing.assert_close(got, _onednn_weight_grad(view.contiguous(), grad_nchw, 5, 1, 2, 1), rtol=1e-12,
                               atol=1e-12)  # fmt: skip


def test_unsupported_inputs_are_declined_not_miscomputed() -> None:
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=CHANNELS_LAST)
    grad = torch.randn(2, 4, 8, 8).contiguous(memory_format=CHANNELS_LAST)
    assert depthwise_weight_grad(x, grad, 9, 1, 4, 1) is None  # no 9x9 specialisation
    assert depthwise_weight_grad(x.bfloat16(), grad.bfloat16(), 5, 1, 2, 1) is None
    assert depthwise_weight_grad(x, grad.double(), 5, 1, 2, 1) is None


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_conv2d_has_the_values_and_gradients_of_the_plain_convolution(stride: int) -> None:
    generator = torch.Generator().manual_seed(stride)
    x = torch.randn(4, 36, 10, 10, generator=generator, dtype=torch.float64).contiguous(memory_format=CHANNELS_LAST)
    weight = torch.randn(36, 1, 5, 5, generator=generator, dtype=torch.float64)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    assert weight_gradient_kind(x, weight, stride, 2, 1) == "native"
    expected = F.conv2d(x, weight, None, stride, 2, 1, 36)
    got = depthwise_conv2d(x, weight, stride, 2)
    assert_same_values_and_gradients(got, expected, (x, weight), generator)


def test_the_result_does_not_depend_on_the_thread_count() -> None:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(5, 16, 9, 9, generator=generator, dtype=torch.float64).contiguous(memory_format=CHANNELS_LAST)
    grad = torch.randn(5, 16, 9, 9, generator=generator, dtype=torch.float64).contiguous(memory_format=CHANNELS_LAST)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = depthwise_weight_grad(x, grad, 5, 1, 2, 1)
        torch.set_num_threads(3)  # more threads than rows of some shapes is fine too
        three = depthwise_weight_grad(x, grad, 5, 1, 2, 1)
    finally:
        torch.set_num_threads(threads)
    assert one is not None and three is not None
    torch.testing.assert_close(one, three, rtol=1e-12, atol=1e-12)


def test_where_each_weight_gradient_applies() -> None:
    weight = torch.randn(8, 1, 5, 5, requires_grad=True)
    last = torch.randn(2, 8, 16, 16).contiguous(memory_format=CHANNELS_LAST)
    assert weight_gradient_kind(last, weight, 1, 2, 1) == "native"
    assert weight_gradient_kind(torch.randn(2, 8, 4, 4), weight, 1, 2, 1) == "gram"  # the map fits in the kernel
    assert weight_gradient_kind(torch.randn(2, 8, 16, 16), weight, 1, 2, 1) is None  # NCHW: channels not dense
    assert weight_gradient_kind(last, weight.detach(), 1, 2, 1) is None  # no weight gradient wanted
    assert weight_gradient_kind(last, torch.randn(8, 1, 3, 3, requires_grad=True), 1, 1, 1) is None  # oneDNN is fast
    with torch.no_grad():
        assert weight_gradient_kind(last, weight, 1, 2, 1) is None


def test_bf16_autocast_falls_back_to_pytorchs_weight_gradient() -> None:
    x = torch.randn(4, 16, 12, 12).contiguous(memory_format=CHANNELS_LAST).requires_grad_(True)
    weight = torch.randn(16, 1, 5, 5, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = depthwise_conv2d(x, weight, 1, 2)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()  # type: ignore[no-untyped-call]
    assert weight.grad is not None and weight.grad.dtype == torch.float32
    exact = torch.autograd.grad(F.conv2d(x, weight, None, 1, 2, 1, 16).sum(), weight)[0]
    assert float((weight.grad - exact).norm() / exact.norm()) < 2e-2  # bf16 rounding, not a wrong gradient


def test_use_fast_depthwise_swaps_only_large_depthwise_convolutions() -> None:
    model = nn.Sequential(
        nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),  # 3x3: oneDNN's is fast
        nn.Conv2d(8, 8, 1, bias=False),  # not depthwise
        nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=True),  # has a bias
        nn.Conv2d(8, 8, 7, stride=2, padding=3, groups=8, bias=False),
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert use_fast_depthwise(model) == 2
    assert [type(m) is FastDepthwiseConv2d for m in model] == [True, False, False, False, True]
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    x = torch.randn(2, 8, 12, 12).contiguous(memory_format=CHANNELS_LAST)
    torch.testing.assert_close(model[4](x), F.conv2d(x, model[4].weight, None, 2, 3, 1, 8))


def test_turned_off_the_kernel_is_not_built(fresh_loader: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDARTS_NATIVE_KERNELS", "0")
    assert not native_weight_grad_available(torch.float32)
    weight = torch.randn(8, 1, 5, 5, requires_grad=True)
    assert (
        weight_gradient_kind(torch.randn(2, 8, 16, 16).contiguous(memory_format=CHANNELS_LAST), weight, 1, 2, 1) is None
    )
    assert not fresh_loader.exists()


def test_a_failed_build_logs_one_line_and_falls_back(
    fresh_loader: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CXX", "false")  # a "compiler" that fails on everything
    with caplog.at_level(logging.WARNING, logger=native_library.__name__):
        assert not native_weight_grad_available(torch.float32)
        assert not native_weight_grad_available(torch.float64)  # the failure is remembered, not retried
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1 and "unavailable" in messages[0] and "\n" not in messages[0]
    x = torch.randn(2, 8, 16, 16).contiguous(memory_format=CHANNELS_LAST).requires_grad_(True)
    weight = torch.randn(8, 1, 5, 5, requires_grad=True)
    depthwise_conv2d(x, weight, 1, 2).sum().backward()  # type: ignore[no-untyped-call]
    assert weight.grad is not None
    assert list(fresh_loader.glob("*")) == []  # no half-built library left behind


def test_a_build_is_cached_and_reused(fresh_loader: Path) -> None:
    first = native_library.build_library("depthwise_weight_grad")
    stamp = first.stat().st_mtime_ns
    second = native_library.build_library("depthwise_weight_grad")
    assert first == second and second.stat().st_mtime_ns == stamp
    assert first.parent == fresh_loader and [p.name for p in fresh_loader.iterdir()] == [first.name]
