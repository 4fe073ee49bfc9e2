"""Accuracy look-up of NAS-Bench-201 architectures from a benchmark file the user supplies.

The search logs the looked-up accuracies of each cycle's genotype when a file is configured. No
benchmark ships with this project (the official NAS-Bench-201 / NATS-Bench files are several GB
and need their own API), so the interface takes any :class:`BenchmarkLookup`; the built-in one
reads a JSON export: ``{"<arch string>": {"cifar10-test": 93.76, "cifar100-test": 71.1, ...}}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from cdarts.errors import DataError
from cdarts.safe_yaml import load_json
from cdarts.spaces.nasbench201.architecture import Nb201Genotype


class BenchmarkLookup(Protocol):
    def metrics(self, genotype: Nb201Genotype) -> dict[str, float] | None:
        """The benchmark's numbers for ``genotype``, or None if it has none."""
        ...


class JsonBenchmarkLookup:
    """A JSON object from arch strings to flat ``{metric: number}`` maps, validated on load."""

    def __init__(self, path: Path) -> None:
        try:
            raw = load_json(path.read_text(encoding="utf-8"), f"the benchmark file {path}", DataError)
        except OSError as error:
            raise DataError(f"cannot read the benchmark file {path} ({error.strerror})") from None
        except ValueError:
            raise DataError(f"the benchmark file {path} is not JSON") from None
        if not isinstance(raw, dict):
            raise DataError(f"the benchmark file {path} must map arch strings to metrics")
        self._table: dict[str, dict[str, float]] = {}
        for arch, metrics in raw.items():
            key = Nb201Genotype.from_arch_string(arch).to_arch_string()  # validates and normalises
            if not isinstance(metrics, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()
            ):
                raise DataError(f"the benchmark entry of {arch[:60]!r} in {path} must map metric names to numbers")
            self._table[key] = {str(name): float(value) for name, value in metrics.items()}

    def __len__(self) -> int:
        return len(self._table)

    def metrics(self, genotype: Nb201Genotype) -> dict[str, float] | None:
        found = self._table.get(genotype.to_arch_string())
        return dict(found) if found is not None else None
