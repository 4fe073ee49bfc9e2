"""Copying parameters between two builds of the same module (pool inheritance and write-back)."""

from __future__ import annotations

from torch import nn


def copy_parameters(source: nn.Module, target: nn.Module) -> None:
    """Copy ``source``'s parameters into ``target``'s, in order (the same op built twice)."""
    source_params = list(source.parameters())
    target_params = list(target.parameters())
    if len(source_params) != len(target_params):
        raise RuntimeError("pool and evaluation op have different parameter lists")
    for src, dst in zip(source_params, target_params, strict=True):
        if src.shape != dst.shape:
            raise RuntimeError(f"pool transfer shape mismatch: {tuple(src.shape)} vs {tuple(dst.shape)}")
        dst.copy_(src)
