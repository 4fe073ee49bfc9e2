"""size_gpu_task component: the accelerators, CPU and memory of a GPU task, scaled at run time by
the run's ``gpus`` (the pipeline's requests are per GPU)."""

from typing import NamedTuple

# No `from __future__ import annotations` here: KFP reads the real annotation objects.
from kfp import dsl

from stages.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def size_gpu_task(
    gpus: int,
    nodes: int,
    cpu_per_gpu: str,
    cpu_limit_per_gpu: str,
    memory_per_gpu: str,
    memory_limit_per_gpu: str,
) -> NamedTuple(  # type: ignore[valid-type]  # KFP reads outputs from this functional form
    "GpuTaskSize",
    [("accelerators", int), ("cpu_request", str), ("cpu_limit", str), ("memory_request", str), ("memory_limit", str)],
):
    """``gpus`` x the per-GPU requests; with ``nodes`` > 1, the small launcher of a TrainJob."""
    from collections import namedtuple

    from cdarts.task_resources import gpu_task_size

    size = gpu_task_size(gpus, nodes, (cpu_per_gpu, cpu_limit_per_gpu), (memory_per_gpu, memory_limit_per_gpu))
    outputs = namedtuple("outputs", "accelerators cpu_request cpu_limit memory_request memory_limit")
    return outputs(size.accelerators, size.cpu_request, size.cpu_limit, size.memory_request, size.memory_limit)
