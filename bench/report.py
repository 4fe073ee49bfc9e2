"""Turn the benchmark JSON files into the README's tables and a PNG plot.

python bench/report.py --results bench/results --plot bench/results/throughput.png

With ``vs_authors.json`` there (``make bench-authors``), the side by side with the authors' code
is printed too, in the README's layout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _load(directory: Path, name: str) -> dict[str, Any] | None:
    path = directory / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def plot(search: dict[str, Any] | None, retrain: dict[str, Any] | None, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (s, title, names)
        for s, title, names in (
            (search, "search joint step (Step A + B)", ("reference", "fast")),
            (retrain, "retrain training step", ("eager", "fast")),
        )
        if s is not None
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for axis, (report, title, names) in zip(axes[0], panels, strict=True):
        batches = [row["batch_size"] for row in report["results"]]
        for name in names:
            if all(name in row for row in report["results"]):
                axis.plot(batches, [row[name]["images_per_s"] for row in report["results"]], marker="o", label=name)
        axis.set_title(f"{title}\n{report['device']} ({report['threads']} threads), torch {report['torch']}")
        axis.set_xlabel("batch size")
        axis.set_ylabel("images / s")
        axis.set_xscale("log", base=2)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)


def table(search: dict[str, Any] | None, retrain: dict[str, Any] | None, overhead: dict[str, Any] | None) -> str:
    lines = [
        "| benchmark | batch | baseline | fast | speedup | peak memory baseline / fast |",
        "|---|---|---|---|---|---|",
    ]

    def memory(report: dict[str, Any], key: str, names: tuple[str, str], batch: int) -> str:
        found = {
            m[key]: m["peak_memory_mb"]
            for m in report.get("memory", [])
            if m["batch_size"] == batch and not m.get("activation_checkpointing")
        }
        if all(name in found for name in names):
            return f"{found[names[0]] / 1024:.1f} / {found[names[1]] / 1024:.1f} GiB"
        return "-"

    for report, label, names, key in (
        (search, "search joint step", ("reference", "fast"), "impl"),
        (retrain, "retrain step", ("eager", "fast"), "variant"),
    ):
        if report is None:
            continue
        for row in report["results"]:
            if not all(name in row for name in names):
                continue
            base, fast = row[names[0]], row[names[1]]
            speedup = base["seconds_per_step"] / fast["seconds_per_step"]
            cells = [
                label,
                str(row["batch_size"]),
                f"{base['seconds_per_step']:.2f} s ({base['images_per_s']:.1f} img/s)",
                f"{fast['seconds_per_step']:.2f} s ({fast['images_per_s']:.1f} img/s)",
                f"{speedup:.2f}x",
                memory(report, key, names, row["batch_size"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    notes = []
    if search is not None:
        for entry in search.get("memory", []):
            if entry.get("activation_checkpointing"):
                notes.append(
                    f"fast + activation checkpointing at batch {entry['batch_size']}: "
                    f"{entry['peak_memory_mb'] / 1024:.1f} GiB peak"
                )
        for row in search["results"]:
            if "equivalence" in row:
                same = row["equivalence"]
                notes.append(
                    f"gradients at batch {row['batch_size']}: fast vs reference "
                    f"{same['fp64_fast_vs_reference_max_gradient']:.0e} in fp64, "
                    f"{same['fp32_fast_vs_reference_max_gradient']:.0e} in fp32; the reference's own fp32 "
                    f"error against fp64 is {same['fp32_reference_vs_exact_max_gradient']:.0e}"
                )
    if overhead is not None:
        notes.append(
            f"pipeline overhead ({overhead['config']}): {overhead['pipeline_wall_seconds']:.1f} s local pipeline vs "
            f"{overhead['runners_total_seconds']:.1f} s of runners = {overhead['overhead_seconds']:.1f} s overhead"
        )
    return "\n".join(lines + [""] + [f"* {note}" for note in notes])


def side_by_side_table(report: dict[str, Any]) -> str:
    """The README's "side by side with the authors' code" table from ``vs_authors.json``."""
    sides = ("authors", "ours_fast", "ours_reference")
    memory = {(m["which"], m["batch_size"]): m["peak_memory_mb"] / 1024 for m in report.get("memory", [])}

    def timing(row: dict[str, Any], side: str) -> str:
        text = f"{row[side]['median_s']:.2f} s ({row[side]['min_s']:.2f})"
        if side != "authors":
            ratio = row["authors"]["median_s"] / row[side]["median_s"]
            text += f": **{ratio:.2f}x**" if side == "ours_fast" else f": {ratio:.2f}x"
        return text

    def per_batch(values: list[str]) -> str:
        return " / ".join(values) if values and all(v != "-" for v in values) else "-"

    searches = report.get("search", [])
    batches = [row["batch_size"] for row in searches]
    lines = ["| | authors | ours fast | ours `reference` |", "|---|---|---|---|"]
    for row in searches:
        cells = [timing(row, side) if side in row else "-" for side in sides]
        lines.append(f"| search joint step, batch {row['batch_size']} | " + " | ".join(cells) + " |")
    if searches:
        label = " / ".join(str(b) for b in batches)
        shares = [
            per_batch([f"{row[side]['fraction_of_matmul']:.1%}".replace("%", " %") for row in searches])
            for side in sides
        ]
        lines.append(f"| share of the matmul rate, batch {label} | " + " | ".join(shares) + " |")
        memory_names = ("authors_search", "ours_fast", "ours_reference")
        peaks = [
            per_batch([f"{memory[(name, b)]:.1f}" if (name, b) in memory else "-" for b in batches])
            for name in memory_names
        ]
        lines.append(
            f"| peak memory, batch {label} | " + " | ".join(f"{p} GiB" if p != "-" else p for p in peaks) + " |"
        )
    for row in report.get("retrain", []):
        batch = row["batch_size"]
        lines.append(
            f"| retrain step (C = 36, 20 cells), batch {batch} | {timing(row, 'authors')} | "
            f"{timing(row, 'ours_fast')} | |"
        )
        if ("authors_retrain", batch) in memory and ("ours_retrain", batch) in memory:
            lines.append(
                f"| retrain peak memory, batch {batch} | {memory[('authors_retrain', batch)]:.1f} GiB | "
                f"{memory[('ours_retrain', batch)]:.1f} GiB | |"
            )
    rate = report.get("matmul_flops_per_s")
    footer = (
        f"fp32 matmul in the run: {rate / 1e9:.0f} GFLOP/s; torch {report.get('torch', '?')}, "
        f"{report.get('threads', '?')} threads"
        if rate
        else ""
    )
    return "\n".join(lines + ([f"\n{footer}"] if footer else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    search, retrain = _load(args.results, "search_step"), _load(args.results, "retrain_step")
    overhead, authors = _load(args.results, "pipeline_overhead"), _load(args.results, "vs_authors")
    if search is None and retrain is None and authors is None:
        raise SystemExit(
            f"no search_step.json, retrain_step.json or vs_authors.json in {args.results}; "
            "run make bench (or make bench-authors)"
        )
    if args.plot is not None and (search is not None or retrain is not None):
        plot(search, retrain, args.plot)
    if search is not None or retrain is not None:
        print(table(search, retrain, overhead))
    if authors is not None:
        print("\nSide by side with the authors' code (vs_authors.json):\n")
        print(side_by_side_table(authors))


if __name__ == "__main__":
    main()
