"""Self-contained HTML and Markdown reports for the KFP UI (and MLflow)."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

from cdarts.architecture import Architecture
from cdarts.spaces.registry import space_of


def genotype_html(genotype: Architecture, heatmap_png: Path | None = None) -> str:
    """The genotype string, its diagrams inline (cells or layer stack), and the alpha heat-map
    (base64 PNG)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>CDARTS genotype</title></head><body>",
        "<h2>Genotype</h2>",
        f"<pre style='white-space: pre-wrap'>{escape(genotype.to_string())}</pre>",
    ]
    for caption, svg in space_of(genotype).drawings(genotype):
        parts += [f"<h3>{escape(caption)}</h3>", svg]
    if heatmap_png is not None and heatmap_png.is_file():
        encoded = base64.b64encode(heatmap_png.read_bytes()).decode()
        parts += ["<h3>softmax(alphas)</h3>", f"<img alt='alpha heat-map' src='data:image/png;base64,{encoded}'>"]
    parts.append("</body></html>")
    return "\n".join(parts)


def evaluation_markdown(metrics: dict[str, Any]) -> str:
    """A short Markdown summary of ``metrics.json``."""
    lines = [
        "# Evaluation",
        "",
        "| metric | value |",
        "|---|---|",
        f"| test top-1 | {metrics['top1']:.4f} |",
        f"| test top-5 | {metrics['top5']:.4f} |",
        f"| test loss | {metrics['loss']:.4f} |",
        f"| test images | {metrics['num_test_images']} |",
        f"| parameters (without aux head) | {metrics['params_without_aux']:,} |",
        f"| parameters (with aux head) | {metrics['params']:,} |",
        f"| multiply-adds (one input) | {metrics['multiply_adds']:,} |",
        f"| latency, batch 1 | {metrics['latency_ms_batch1']:.2f} ms |",
        f"| throughput, batch {metrics['throughput_batch_size']} | {metrics['throughput_images_per_s']:.1f} images/s |",
        "",
        f"Genotype: `{metrics['genotype']}`",
    ]
    return "\n".join(lines) + "\n"
