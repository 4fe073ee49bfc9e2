"""The five candidate ops of a NAS-Bench-201 edge, in the benchmark's order (the alphas' columns)."""

from __future__ import annotations

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
