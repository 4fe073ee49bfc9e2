"""The weight gradient of a channels-last depthwise convolution, from depthwise_weight_grad.cpp.

oneDNN's weight gradient of a depthwise convolution with a 5x5 (or larger) or dilated kernel is
slow on CPUs: 1.8-2.0 ms at (32, 16, 32, 32) for a 5x5 kernel on a 2-core Xeon, 12x its 3x3
counterpart for 2.8x the work. The native kernel computes the same sums (in another order) in
0.34 ms there. It reads the tensors in place (any batch and spatial strides, channels dense),
so the subsampled and phase-split views of the fast search need no copy.
"""

from __future__ import annotations

import ctypes

import torch

from cdarts.kernels.native_library import load_library

_LIBRARY = "depthwise_weight_grad"
_SYMBOLS = {torch.float32: "cdarts_depthwise_weight_grad_f32", torch.float64: "cdarts_depthwise_weight_grad_f64"}
SUPPORTED_KERNEL_SIZES = (3, 5, 7)


def _function(dtype: torch.dtype) -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    library = load_library(_LIBRARY)
    if library is None or dtype not in _SYMBOLS:
        return None
    function = getattr(library, _SYMBOLS[dtype])
    function.restype = ctypes.c_int
    pointer, int64s = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)
    function.argtypes = [pointer, pointer, pointer, int64s, int64s, int64s] + [ctypes.c_int] * 5
    return function


def native_weight_grad_available(dtype: torch.dtype) -> bool:
    """True where the kernel is built and loaded and handles ``dtype`` (fp32, fp64)."""
    return _function(dtype) is not None


def _int64s(*values: int) -> ctypes.Array[ctypes.c_int64]:
    return (ctypes.c_int64 * len(values))(*values)


def _strides(t: torch.Tensor) -> ctypes.Array[ctypes.c_int64]:
    """(n, h, w) element strides of an (N, C, H, W) tensor, as the kernel reads them."""
    return _int64s(t.stride(0), t.stride(2), t.stride(3))


def depthwise_weight_grad(
    x: torch.Tensor, grad: torch.Tensor, kernel_size: int, stride: int, padding: int, dilation: int
) -> torch.Tensor | None:
    """x: (N, C, H, W) input; grad: (N, C, OH, OW) gradient of the output -> (C, 1, k, k) weight
    gradient of ``conv2d(x, W, stride, padding, dilation, groups=C)``, or None where the native
    kernel cannot take it (not built, another dtype or device, a kernel size it lacks)."""
    function = _function(x.dtype)
    if function is None or x.device.type != "cpu" or kernel_size not in SUPPORTED_KERNEL_SIZES:
        return None
    if grad.dtype != x.dtype or grad.device != x.device:
        return None
    n, c, h, w = x.shape
    out_h, out_w = grad.shape[2], grad.shape[3]
    if x.stride(1) != 1:
        x = x.contiguous(memory_format=torch.channels_last)
    if grad.stride(1) != 1:
        grad = grad.contiguous(memory_format=torch.channels_last)
    grad_weight = torch.empty(c, 1, kernel_size, kernel_size, dtype=x.dtype)
    if x.numel() == 0 or grad.numel() == 0:
        return grad_weight.zero_()
    status = function(
        x.data_ptr(), grad.data_ptr(), grad_weight.data_ptr(), _int64s(n, h, w, c, out_h, out_w), _strides(x),
        _strides(grad), kernel_size, stride, padding, dilation, torch.get_num_threads(),
    )  # fmt: skip
    if status != 0:
        return None
    return grad_weight
