"""Runner of the ``data_prep`` stage: a data source -> a validated, self-describing prepared
dataset directory (see :mod:`cdarts.data.prepared`), written atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image, UnidentifiedImageError

from cdarts import __version__
from cdarts.atomic_files import disk_error, write_text_atomic
from cdarts.config import DataConfig
from cdarts.data.prepared import MANIFEST_NAME, MANIFEST_SCHEMA_VERSION, PreparedDataset, content_digest, decode_image
from cdarts.data.regular_file import read_regular_file
from cdarts.data.sources import ArraySplit, FileSplit, SourceData, read_source
from cdarts.data.splits import stratified_halves
from cdarts.errors import DataError
from cdarts.storage import fetch_to_local, is_remote
from cdarts.tracking import Tracker


def _check_labels(labels: npt.NDArray[np.int64], num_classes: int, split: str) -> None:
    if len(labels) == 0:
        raise DataError(f"the {split} split is empty")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(f"{split} labels fall outside 0..{num_classes - 1}")


def _write_arrays(split: ArraySplit, name: str, image_size: int, out: Path) -> dict[str, str]:
    images = split.images
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(f"{name} images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
    if images.shape[1] != images.shape[2] or images.shape[1] != image_size:
        raise DataError(
            f"{name} images are {images.shape[1]}x{images.shape[2]} pixels but data.image_size is {image_size}"
        )
    np.save(out / f"{name}_images.npy", np.ascontiguousarray(images))
    np.save(out / f"{name}_labels.npy", split.labels.astype(np.int64))
    return {f"{name}_images": f"{name}_images.npy", f"{name}_labels": f"{name}_labels.npy"}


def _write_encoded(split: FileSplit, name: str, out: Path) -> dict[str, str]:
    """Pack every image file into one shard after checking that it decodes completely."""
    index = np.zeros((len(split.files), 2), dtype=np.int64)
    offset = 0
    with (out / f"{name}_images.bin").open("wb") as shard:
        for i, path in enumerate(split.files):
            data = read_regular_file(path)
            try:
                decode_image(data).load()
            except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
                raise DataError(f"image {path} is corrupt or truncated ({error.__class__.__name__})") from None
            shard.write(data)
            index[i] = (offset, len(data))
            offset += len(data)
    np.save(out / f"{name}_index.npy", index)
    np.save(out / f"{name}_labels.npy", split.labels.astype(np.int64))
    return {
        f"{name}_images": f"{name}_images.bin",
        f"{name}_index": f"{name}_index.npy",
        f"{name}_labels": f"{name}_labels.npy",
    }


def _array_statistics(images: npt.NDArray[np.uint8]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over all training pixels, in 0..1 units."""
    total = np.zeros(images.shape[-1])
    total_sq = np.zeros(images.shape[-1])
    count = 0
    for start in range(0, len(images), 4096):
        chunk = images[start : start + 4096].reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
        total += chunk.sum(0)
        total_sq += (chunk**2).sum(0)
        count += chunk.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return mean.tolist(), std.tolist()


def _encoded_statistics(split: FileSplit, sample: int, image_size: int, seed: int) -> tuple[list[float], list[float]]:
    """Mean and std estimated on a seeded sample of images, resized and centre-cropped."""
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(split.files), generator=generator)[:sample].tolist()
    pixels = []
    for i in chosen:
        image = decode_image(read_regular_file(split.files[i]))
        scale = image_size / min(image.size)
        image = image.resize(
            (max(image_size, round(image.width * scale)), max(image_size, round(image.height * scale)))
        )
        left, top = (image.width - image_size) // 2, (image.height - image_size) // 2
        image = image.crop((left, top, left + image_size, top + image_size))
        pixels.append(np.asarray(image, dtype=np.uint8).reshape(1, image_size, image_size, 3))
    return _array_statistics(np.concatenate(pixels))


def _write_prepared(source: SourceData, data: DataConfig, seed: int, out: Path) -> dict[str, Any]:
    num_classes = len(source.classes)
    if data.num_classes is not None and data.num_classes != num_classes:
        raise DataError(f"the data has {num_classes} classes but data.num_classes is {data.num_classes}")
    for split_name, split in (("train", source.train), ("test", source.test)):
        _check_labels(split.labels, num_classes, split_name)
    counts = np.bincount(source.train.labels, minlength=num_classes)
    if counts.min() < 2:
        missing = source.classes[int(counts.argmin())]
        raise DataError(f"class {missing!r} has {counts.min()} training images; the search split needs two")

    files: dict[str, str] = {}
    if isinstance(source.train, ArraySplit) and isinstance(source.test, ArraySplit):
        data_format, channels, image_size = "arrays", int(source.train.images.shape[-1]), data.image_size
        files |= _write_arrays(source.train, "train", data.image_size, out)
        files |= _write_arrays(source.test, "test", data.image_size, out)
        mean, std = _array_statistics(source.train.images)
    elif isinstance(source.train, FileSplit) and isinstance(source.test, FileSplit):
        data_format, channels, image_size = "encoded", 3, None
        files |= _write_encoded(source.train, "train", out)
        files |= _write_encoded(source.test, "test", out)
        mean, std = _encoded_statistics(source.train, data.stats_sample, data.image_size, seed)
    else:  # pragma: no cover - every source returns matching split kinds
        raise TypeError("train and test splits differ in kind")

    search_train, search_val = stratified_halves(torch.from_numpy(source.train.labels), seed)
    search_split = {"seed": seed, "train": search_train.tolist(), "val": search_val.tolist()}
    # The digest covers the data and the search split: both decide what a search sees.
    digest = content_digest(
        [out / name for name in sorted(files.values())], json.dumps(search_split, sort_keys=True).encode()
    )
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "format": data_format,
        "source": {"kind": data.source, "location": data.location},
        "classes": source.classes,
        "num_classes": num_classes,
        "channels": channels,
        "image_size": image_size,
        "counts": {
            "train": len(source.train.labels),
            "test": len(source.test.labels),
            "search_train": len(search_train),
            "search_val": len(search_val),
            "train_per_class": counts.tolist(),
        },
        "normalization": {"mean": mean, "std": std},
        "search_split": search_split,
        "files": files,
        "digest": digest,
        "created_by": f"cdarts {__version__}",
    }


def _remove_stale_partials(out_dir: Path) -> None:
    """Remove the hidden partial directories left by killed data preps into ``out_dir``."""
    for stale in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        pid = stale.name.rsplit(".partial-", 1)[1].split("-")[0]
        # Our own pid in the name is a killed run's whose pid came round again (a new container).
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue  # another data prep on this machine is still writing it
        shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_data_prep(data: DataConfig, seed: int, out_dir: Path, tracker: Tracker | None = None) -> PreparedDataset:
    """Read, validate and prepare the configured source into ``out_dir``.

    Everything is written into a temporary sibling directory that replaces ``out_dir`` only when
    complete, so a failed run never leaves a directory that looks prepared. An existing
    ``out_dir`` is replaced only if it is empty or itself a prepared dataset.
    """
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file():
        raise DataError(f"{out_dir} exists and is not a prepared dataset; choose another output directory")
    # Remote sources are fetched (and checksummed) into a scratch directory, then read like local
    # ones; image files are read while packing, so the scratch copy lives until the end.
    with tempfile.TemporaryDirectory(prefix="cdarts-source-") as workdir:
        if data.location is not None and is_remote(data.location):
            local = fetch_to_local(data.location, Path(workdir))
            source = read_source(data.model_copy(update={"location": str(local)}))
        else:
            source = read_source(data)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(out_dir)
        partial = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        partial.mkdir()
        try:
            manifest = _write_prepared(source, data, seed, partial)
            write_text_atomic(partial / MANIFEST_NAME, json.dumps(manifest, indent=1))
            if out_dir.exists():
                shutil.rmtree(out_dir)
            partial.rename(out_dir)
        except OSError as error:  # a full disk while writing arrays: name the output, not our temp dir
            raise disk_error(out_dir, error) from None
        finally:
            if partial.exists():
                shutil.rmtree(partial)
    prepared = PreparedDataset.load(out_dir)
    if tracker is not None:
        tracker.log_params({"data": data.model_dump(mode="json"), "seed": seed})
        tracker.log_dataset(data.source, prepared.digest, data.location or data.source, "training")
        tracker.set_tags({"cdarts.dataset_digest": prepared.digest})
        tracker.log_artifact(out_dir / MANIFEST_NAME)
    return prepared
