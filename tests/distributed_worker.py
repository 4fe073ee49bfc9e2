"""Run by ``torchrun`` in test_distributed.py: one search process that records its own alphas."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from cdarts.config import load_config
from cdarts.distributed import destroy_process_group
from cdarts.runners.search import run_search

if __name__ == "__main__":
    config_path, dataset_dir, out_dir, record_dir = sys.argv[1:5]
    torch.set_num_threads(1)
    result = run_search(load_config(config_path), Path(dataset_dir), Path(out_dir))
    rank = int(os.environ["RANK"])
    torch.save({**result.alphas, "completed": result.completed}, Path(record_dir) / f"rank{rank}.pt")
    destroy_process_group()
