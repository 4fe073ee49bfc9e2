"""Data-parallel search with two CPU processes (torchrun + gloo)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cdarts.config import load_config
from cdarts.data.sampling import ShardedSampler
from cdarts.data.splits import stratified_halves
from cdarts.seeding import seed_everything
from cdarts.spaces.darts.architecture import Genotype
from tests.conftest import CONFIGS, REPO_ROOT, tiny_network


def test_sharded_sampler_gives_disjoint_equal_shards_per_epoch() -> None:
    shards = [ShardedSampler(11, seed=3, rank=r, world_size=2) for r in range(2)]
    for sampler in shards:
        sampler.set_epoch(4)
    first, second = (list(s) for s in shards)
    assert len(first) == len(second) == 6
    assert set(first) | set(second) == set(range(11))
    assert len(set(first) & set(second)) <= 1  # only the padding sample may repeat
    again = ShardedSampler(11, seed=3, rank=0, world_size=2)
    again.set_epoch(4)
    assert list(again) == first
    again.set_epoch(5)
    assert list(again) != first


def test_stratified_halves_keep_every_class_in_both_halves() -> None:
    labels = torch.arange(10).repeat_interleave(7)  # class-sorted, odd counts: the ImageNet trap
    train, val = stratified_halves(labels, seed=0)
    assert not set(train.tolist()) & set(val.tolist())
    assert len(train) + len(val) == 70 and abs(len(train) - len(val)) <= 1
    for cls in range(10):
        assert (labels[train] == cls).sum() >= 3 and (labels[val] == cls).sum() >= 3
    again_train, _ = stratified_halves(labels, seed=0)
    other_train, _ = stratified_halves(labels, seed=1)
    assert torch.equal(train, again_train) and not torch.equal(train, other_train)


@pytest.mark.slow
def test_two_process_search_keeps_alphas_identical_and_writes_once(tmp_path: Path, tiny_dataset: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun is not None
    out_dir, records = tmp_path / "search", tmp_path / "records"
    records.mkdir()
    completed = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            str(REPO_ROOT / "tests" / "distributed_worker.py"),
            str(CONFIGS / "tiny.yaml"),
            str(tiny_dataset),
            str(out_dir),
            str(records),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rank0 = torch.load(records / "rank0.pt", weights_only=True)
    rank1 = torch.load(records / "rank1.pt", weights_only=True)
    assert rank0["completed"] and rank1["completed"]
    config = load_config(str(CONFIGS / "tiny.yaml"))
    seed_everything(config.seed)
    initial = tiny_network(config)
    for name in ("alphas_normal", "alphas_reduce"):
        assert torch.equal(rank0[name], rank1[name])
        assert not torch.equal(rank0[name], getattr(initial.search_network, name).detach())  # it did search
    genotype = Genotype.from_dict(json.loads((out_dir / "genotype.json").read_text()))
    assert genotype.n_nodes == 4
    # Only rank 0 logs: one record per logging call, not two.
    steps = [json.loads(line)["step"] for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == len(set(steps))
