"""The config against the prepared dataset, before a stage does any work.

A config can be valid on its own and still ask for something the prepared data cannot give
(more classes than it has, bigger images than were stored, batches larger than a split). Each
training runner calls :func:`check_config_against_data` first, so such a run is refused in one
line before a directory, a model or a data loader is made, not deep inside torch.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from cdarts.config import ExperimentConfig
from cdarts.data.prepared import PreparedDataset
from cdarts.errors import DataError

Stage = Literal["search", "retrain"]


def _count(value: Any, what: str, prepared: PreparedDataset) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DataError(f"prepared dataset {prepared.root}: {what} is not a count ({value!r})")
    return value


def _split_sizes(prepared: PreparedDataset) -> dict[str, int]:
    """Image counts of the splits, from the manifest (no array is read)."""
    manifest = prepared.manifest
    counts: dict[str, Any] = manifest["counts"] if isinstance(manifest.get("counts"), dict) else {}
    split: dict[str, Any] = manifest["search_split"] if isinstance(manifest.get("search_split"), dict) else {}
    sizes = {}
    for name, fallback in (("search_train", split.get("train")), ("search_val", split.get("val"))):
        value = counts.get(name, len(fallback) if isinstance(fallback, list) else None)
        sizes[name] = _count(value, f"counts.{name}", prepared)
    for name in ("train", "test"):
        if name in counts:
            sizes[name] = _count(counts[name], f"counts.{name}", prepared)
    return sizes


def _per_process(images: int, world_size: int) -> int:
    """What each process gets of a split (:class:`cdarts.data.sampling.ShardedSampler` pads up)."""
    return -(-images // world_size)


def check_config_against_data(
    config: ExperimentConfig, prepared: PreparedDataset, stage: Stage, world_size: int | None = None
) -> None:
    """Raise :class:`DataError` (one line naming the key) if ``stage`` of ``config`` cannot run on
    ``prepared``. ``world_size`` defaults to torchrun's ``WORLD_SIZE`` (1 without torchrun)."""
    if world_size is None:
        raw = os.environ.get("WORLD_SIZE", "1")
        world_size = int(raw) if raw.isdigit() and int(raw) > 0 else 1
    data = config.data
    if data.num_classes is not None and data.num_classes != prepared.num_classes:
        raise DataError(
            f"data.num_classes is {data.num_classes} but the prepared dataset {prepared.root} has "
            f"{prepared.num_classes} classes"
        )
    stored = prepared.image_size  # None for encoded images, which are resized to any size
    if stored is not None and data.image_size > stored:
        raise DataError(
            f"data.image_size is {data.image_size} but the prepared dataset {prepared.root} stores "
            f"{stored}x{stored} px images; lower it or prepare the data again at that size"
        )
    sizes = _split_sizes(prepared)
    if stage == "search":
        batch = config.search.batch_size
        for half in ("search_train", "search_val"):
            if _per_process(sizes[half], world_size) < batch:
                raise DataError(
                    f"search.batch_size {batch} is larger than the {sizes[half]} images of the {half} split "
                    f"of {prepared.root}" + (f" ({world_size} processes)" if world_size > 1 else "")
                )
    else:
        batch = config.retrain.batch_size
        train = sizes.get("train", sizes["search_train"] + sizes["search_val"])
        if _per_process(train, world_size) < batch:
            raise DataError(
                f"retrain.batch_size {batch} is larger than the {train} training images of {prepared.root}"
                + (f" ({world_size} processes)" if world_size > 1 else "")
            )
        if sizes.get("test", 1) < 1:
            raise DataError(f"the prepared dataset {prepared.root} has no test images to evaluate the retrain on")
