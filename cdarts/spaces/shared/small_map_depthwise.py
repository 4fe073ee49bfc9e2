"""Depthwise convolutions on maps no larger than their kernel, with a fast weight gradient.

oneDNN's weight gradient of a depthwise convolution is slow when the map is tiny against the
kernel: a 5x5 kernel on 4x4 maps (what a phase-split ``dil_conv_5x5`` computes on the 8-pixel
stage of the CIFAR search, see phase_split_conv) takes 7.5 ms for (128, 64, 4, 4) on a 2-core
EPYC, 35x its forward. There every output pixel sees nearly the whole map, so the gradient is
cheaper as a per-channel Gram matrix of the upstream gradient and the input, summed over the
batch by one batched matmul and then gathered into kernel taps:

    M[c, p, q] = sum_n g[n, c, p] * x[n, c, q]                (p, q: pixels of the map)
    dW[c, i, j] = sum over pixels p = (a, b) of M[c, p, (a + i - pad, b + j - pad)] (in range)

The same products, summed in another order: 0.5 ms instead of 7.5. On 8x8 maps the two are even,
so only maps no larger than the kernel take this path (depthwise_conv.py chooses; forward and
input gradient stay oneDNN's).
"""

from __future__ import annotations

import functools

import torch


def covers_map(kernel_size: int, height: int, width: int) -> bool:
    """True when a kernel of 5 or more taps is larger than the map (the slow case for oneDNN)."""
    return kernel_size >= 5 and height < kernel_size and width < kernel_size


@functools.lru_cache(maxsize=64)
def _tap_selection(
    height: int, width: int, kernel_size: int, padding: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """(H*W*H*W, k*k) 0/1 matrix: entry ((p, q), (i, j)) is 1 where pixel q is tap (i, j) of output pixel p."""
    rows, cols, taps_i, taps_j = torch.meshgrid(
        torch.arange(height), torch.arange(width), torch.arange(kernel_size), torch.arange(kernel_size), indexing="ij"
    )
    source_rows, source_cols = rows + taps_i - padding, cols + taps_j - padding
    valid = (source_rows >= 0) & (source_rows < height) & (source_cols >= 0) & (source_cols < width)
    pixels = height * width
    pair = (rows * width + cols) * pixels + source_rows * width + source_cols
    tap = taps_i * kernel_size + taps_j
    selection = torch.zeros(pixels * pixels, kernel_size * kernel_size, dtype=dtype)
    selection[pair[valid], tap[valid]] = 1
    return selection.to(device)


def gram_weight_gradient(grad: torch.Tensor, x: torch.Tensor, kernel_size: int, padding: int) -> torch.Tensor:
    """grad, x: (N, C, H, W) -> (C, 1, k, k) weight gradient of a stride-1 depthwise convolution."""
    n, c, h, w = x.shape
    grad_rows = grad.permute(1, 2, 3, 0).reshape(c, h * w, n).contiguous()  # (C, HW, N)
    x_cols = x.permute(1, 0, 2, 3).reshape(c, n, h * w).contiguous()  # (C, N, HW)
    gram = torch.bmm(grad_rows, x_cols).reshape(c, h * w * h * w)
    selection = _tap_selection(h, w, kernel_size, padding, x.device, x.dtype)
    return (gram @ selection).reshape(c, 1, kernel_size, kernel_size)
