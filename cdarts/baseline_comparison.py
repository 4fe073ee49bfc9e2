"""The searched architecture against random architectures trained with the same recipe and budget:
summary statistics and their Markdown and HTML reports.

A score comes from an evaluation's ``metrics.json`` (``top1``, a fraction, on the test split,
``params_without_aux`` and ``multiply_adds`` of the deployed network, ``genotype``).
"""

from __future__ import annotations

import html
import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ArchitectureScore:
    """One retrained architecture: ``label`` names its row (searched, random-1, DARTS_V2, ...)."""

    label: str
    architecture: str
    top1: float
    params: int
    multiply_adds: int

    @classmethod
    def from_evaluation(cls, label: str, metrics: dict[str, Any]) -> ArchitectureScore:
        """From an evaluation's metrics.json; a missing or non-numeric field raises ValueError."""
        try:
            return cls(
                label=label,
                architecture=str(metrics["genotype"]),
                top1=float(metrics["top1"]),
                params=int(metrics["params_without_aux"]),
                multiply_adds=int(metrics["multiply_adds"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"the evaluation of {label} lacks a usable {error} field") from None


@dataclass(frozen=True)
class BaselineComparison:
    """``rank`` is 1 + the number of random architectures with a strictly higher top-1;
    ``gap_in_std`` is (searched - random mean) / random std, None with fewer than two randoms
    or when they all score the same."""

    searched: ArchitectureScore
    random: list[ArchitectureScore]
    random_mean_top1: float
    random_std_top1: float
    rank: int
    gap_top1: float
    gap_in_std: float | None

    def metrics(self) -> dict[str, float]:
        """The scalars tracked in MLflow (``gap_in_std`` only when it is defined)."""
        values = {
            "compare/searched_top1": self.searched.top1,
            "compare/random_mean_top1": self.random_mean_top1,
            "compare/random_std_top1": self.random_std_top1,
            "compare/random_count": float(len(self.random)),
            "compare/searched_rank": float(self.rank),
            "compare/gap_top1": self.gap_top1,
        }
        if self.gap_in_std is not None:
            values["compare/gap_in_std"] = self.gap_in_std
        return values

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "random_count": len(self.random)}


def compare_with_random(searched: ArchitectureScore, random: list[ArchitectureScore]) -> BaselineComparison:
    """Statistics of the searched score among the random ones (at least one)."""
    if not random:
        raise ValueError("a comparison needs at least one random architecture")
    scores = [score.top1 for score in random]
    mean = statistics.fmean(scores)
    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
    gap = searched.top1 - mean
    return BaselineComparison(
        searched=searched,
        random=list(random),
        random_mean_top1=mean,
        random_std_top1=std,
        rank=1 + sum(score > searched.top1 for score in scores),
        gap_top1=gap,
        gap_in_std=gap / std if len(scores) > 1 and std > 0 and math.isfinite(std) else None,
    )


def _verdict(comparison: BaselineComparison) -> str:
    total = len(comparison.random) + 1
    if comparison.gap_in_std is None:
        spread = "the random scores have no spread to measure the gap against"
    else:
        spread = f"{comparison.gap_in_std:+.2f} random standard deviations"
    return (
        f"The searched architecture ranks {comparison.rank} of {total}: "
        f"{100 * comparison.gap_top1:+.2f} points of top-1 against the random mean ({spread})."
    )


def _spread(comparison: BaselineComparison) -> str:
    return (
        f"Random mean top-1 {100 * comparison.random_mean_top1:.2f} %, standard deviation "
        f"{100 * comparison.random_std_top1:.2f} points ({len(comparison.random)} architectures)."
    )


def _rows(comparison: BaselineComparison) -> list[tuple[str, str, str, str, str]]:
    return [
        (s.label, f"{100 * s.top1:.2f}", f"{s.params:,}", f"{s.multiply_adds / 1e6:.1f}", s.architecture)
        for s in (comparison.searched, *comparison.random)
    ]


HEADINGS = ("architecture", "top-1 %", "params", "M multiply-adds", "genotype")


def comparison_markdown(comparison: BaselineComparison) -> str:
    lines = [
        "# Searched architecture against random architectures",
        "",
        "Every row is retrained with the same recipe and budget and evaluated on the same test split.",
        "",
        "| " + " | ".join(HEADINGS) + " |",
        "|---|---:|---:|---:|---|",
    ]
    lines += ["| " + " | ".join((*row[:4], f"`{row[4]}`")) + " |" for row in _rows(comparison)]
    lines += [
        "",
        _spread(comparison),
        "",
        _verdict(comparison),
        "",
    ]
    return "\n".join(lines)


def comparison_html(comparison: BaselineComparison) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in HEADINGS)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(cell)}</td>" for cell in row[:4])
        + f"<td><code>{html.escape(row[4])}</code></td></tr>"
        for row in _rows(comparison)
    )
    summary = html.escape(f"{_spread(comparison)} {_verdict(comparison)}")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Searched against random</title></head><body>"
        "<h1>Searched architecture against random architectures</h1>"
        "<p>Every row is retrained with the same recipe and budget and evaluated on the same test split.</p>"
        f"<table border='1' cellpadding='4'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<p>{summary}</p></body></html>"
    )
