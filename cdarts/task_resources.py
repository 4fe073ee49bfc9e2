"""Kubernetes resource quantities of pipeline tasks, scaled by the GPUs a task gets.

A GPU task asks for CPU and memory per GPU (``4`` CPUs and ``16G`` per GPU by default), so a task
run with ``gpus=8`` gets eight times what a one-GPU task gets. The pipeline's ``gpus`` is a run
parameter, so the scaling happens at run time, in a small task whose outputs set the requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from cdarts.errors import ConfigError

_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
# What the launcher of a multi-node search needs: it only creates and watches a TrainJob.
LAUNCHER_CPU = ("500m", "1")
LAUNCHER_MEMORY = ("1G", "2G")


def check_quantity(quantity: str, what: str) -> str:
    """``quantity`` if it is a plain Kubernetes quantity (``4``, ``500m``, ``16G``, ``1.5Gi``)."""
    match = _QUANTITY.match(quantity)
    if match is None or Decimal(match.group(1)) <= 0:
        raise ConfigError(f"{what} {quantity!r} is not a positive Kubernetes quantity such as 4, 500m, 16G or 1.5Gi")
    return quantity


def scale_quantity(quantity: str, factor: int) -> str:
    """``quantity`` times ``factor`` in the same unit: ``scale_quantity("16G", 4) == "64G"``."""
    match = _QUANTITY.match(quantity)
    if match is None or factor < 1:
        raise ConfigError(f"cannot scale {quantity!r} by {factor}")
    try:
        number = Decimal(match.group(1)) * factor
    except InvalidOperation:
        raise ConfigError(f"cannot scale {quantity!r} by {factor}") from None
    text = f"{number:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text}{match.group(2) or ''}"


@dataclass(frozen=True)
class GpuTaskSize:
    """What one GPU task requests: accelerators, and CPU/memory requests and limits."""

    accelerators: int
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


def gpu_task_size(gpus: int, nodes: int, cpu: tuple[str, str], memory: tuple[str, str]) -> GpuTaskSize:
    """The size of a task with ``gpus`` GPUs, given per-GPU (request, limit) pairs of CPU and
    memory. With ``nodes`` > 1 the task only launches a Kubeflow Trainer TrainJob (whose nodes
    get the GPUs), so it asks for no GPU and little CPU and memory."""
    if gpus < 1 or nodes < 1:
        raise ConfigError(f"gpus and nodes must be at least 1 (got gpus={gpus}, nodes={nodes})")
    if nodes > 1:
        return GpuTaskSize(0, *LAUNCHER_CPU, *LAUNCHER_MEMORY)
    return GpuTaskSize(
        gpus,
        scale_quantity(cpu[0], gpus),
        scale_quantity(cpu[1], gpus),
        scale_quantity(memory[0], gpus),
        scale_quantity(memory[1], gpus),
    )
