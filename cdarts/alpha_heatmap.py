"""A heat-map (PNG) of alpha probabilities, one panel per alphas tensor, for every space."""

from __future__ import annotations

from pathlib import Path

import torch


def write_alpha_heatmap(
    probabilities: dict[str, torch.Tensor], candidates: tuple[str, ...], row_labels: dict[str, list[str]], path: Path
) -> Path:
    """One panel per alphas tensor, side by side: softmax(alphas), one row per edge or slot.

    probabilities: name -> (rows, len(candidates)); row_labels: name -> a label per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(len(labels) for labels in row_labels.values())
    figure, axes = plt.subplots(
        1, len(probabilities), figsize=(6 * len(probabilities), 0.35 * rows + 2), constrained_layout=True, squeeze=False
    )
    for axis, (name, probs) in zip(axes[0], probabilities.items(), strict=True):
        # Colour by the data's own range: early in a search every weight is close to 1/K.
        image = axis.imshow(probs.detach().float().numpy(), cmap="viridis", aspect="auto")
        axis.set_title(name.replace("alphas_", "") + ": softmax(alphas)")
        axis.set_xticks(range(len(candidates)), candidates, rotation=45, ha="right")
        axis.set_yticks(range(len(row_labels[name])), row_labels[name])
        figure.colorbar(image, ax=axis, fraction=0.046)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
