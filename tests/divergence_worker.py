"""A process of the two-process divergence test (kept light: a spawned child imports only this)."""

from __future__ import annotations

import math
from typing import Any

import torch

from cdarts.distributed import DistributedContext
from cdarts.divergence import check_finite_state
from cdarts.errors import TrainingDivergedError


def check_on_rank(rank: int, init_file: str, results: Any) -> None:
    """Rank 1 alone holds an inf; puts (rank, "passed" or the error's message) on ``results``."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    weights = torch.ones(3) if rank == 0 else torch.tensor([1.0, math.inf, 1.0])
    try:
        check_finite_state(
            [("w", weights)],
            stage="search",
            where="by step 3",
            hint="lower it",
            distributed=DistributedContext(rank, 2),
            device=torch.device("cpu"),
        )
        results.put((rank, "passed"))
    except TrainingDivergedError as error:
        results.put((rank, str(error)))
    finally:
        torch.distributed.destroy_process_group()
