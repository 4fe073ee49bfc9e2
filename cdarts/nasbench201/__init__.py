"""The NAS-Bench-201 cell space (genotypes and the benchmark look-up so far)."""

from __future__ import annotations

from cdarts.nasbench201.genotype import NB201_OPS, Nb201Genotype
from cdarts.nasbench201.lookup import BenchmarkLookup, JsonBenchmarkLookup

__all__ = ["NB201_OPS", "BenchmarkLookup", "JsonBenchmarkLookup", "Nb201Genotype"]
