"""The KFP components: one per pipeline stage, each a thin shell around a runner."""

from __future__ import annotations

from stages.close_tracking import close_tracking
from stages.compare_baselines import compare_baselines
from stages.data_prep import data_prep
from stages.derive_genotype import derive_genotype
from stages.evaluate import evaluate
from stages.import_genotype import import_genotype
from stages.register import register
from stages.retrain import retrain
from stages.sample_baselines import sample_baselines
from stages.search import search
from stages.size_gpu_task import size_gpu_task

__all__ = [
    "close_tracking",
    "compare_baselines",
    "data_prep",
    "derive_genotype",
    "evaluate",
    "import_genotype",
    "register",
    "retrain",
    "sample_baselines",
    "search",
    "size_gpu_task",
]
