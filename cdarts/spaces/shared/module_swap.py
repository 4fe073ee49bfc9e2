"""Re-classing modules in place: a faster subclass computing the same function takes over."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def swap_class(module: nn.Module, qualifies: Callable[[nn.Module], bool], subclass: type[nn.Module]) -> int:
    """Give every submodule of ``module`` (itself included) for which ``qualifies`` holds the class
    ``subclass``, a subclass of its own class that keeps its parameters, buffers and state-dict
    keys; returns how many changed."""
    count = 0
    for child in module.modules():
        if qualifies(child):
            child.__class__ = subclass
            count += 1
    return count
