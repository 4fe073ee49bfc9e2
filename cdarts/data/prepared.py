"""The prepared dataset directory: what data prep writes and every later stage reads.

Layout::

    manifest.json          schema_version, format, classes, counts, normalisation, search split,
                           source, content digest
    train_labels.npy       (N,) int64                 test_labels.npy
    arrays format:  train_images.npy (N, H, W, C) uint8, test_images.npy
    encoded format: train_images.bin (image files back to back) + train_index.npy (N, 2) int64
                    (offset, length); the same for test

Everything is read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from cdarts.errors import DataError
from cdarts.safe_yaml import load_json

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
Split = Literal["train", "test"]


def content_digest(paths: list[Path], extra: bytes = b"") -> str:
    """sha256 over the bytes of ``paths`` in order (names included) and ``extra``, as ``sha256:<hex>``."""
    digest = hashlib.sha256(extra)
    for path in paths:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def decode_image(data: bytes) -> Image.Image:
    """An RGB PIL image from encoded bytes (greyscale and palette images are converted)."""
    image = Image.open(io.BytesIO(data))
    return image.convert("RGB")


@dataclass
class PreparedDataset:
    """Read access to a prepared dataset directory."""

    root: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, root: Path) -> PreparedDataset:
        path = root / MANIFEST_NAME
        if not path.is_file():
            raise DataError(f"{root} is not a prepared dataset (no {MANIFEST_NAME}); run data-prep first")
        try:
            manifest = load_json(path.read_text(encoding="utf-8"), f"manifest {path}", DataError)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DataError(f"{path} is not valid JSON") from None
        if not isinstance(manifest, dict):
            raise DataError(f"{path} does not hold a manifest object")
        if manifest.get("schema_version") != MANIFEST_SCHEMA_VERSION:
            raise DataError(f"{path}: unsupported manifest schema_version {manifest.get('schema_version')!r}")
        _check_manifest(manifest, path)
        for name in manifest["files"].values():
            if not (root / name).is_file():
                raise DataError(f"prepared dataset {root} is incomplete: {name} is missing")
        dataset = cls(root, manifest)
        dataset._check_arrays()
        return dataset

    def _check_arrays(self) -> None:
        """Every array against the manifest: dtypes, shapes, counts, label range, shard bounds."""
        counts, classes = self.manifest["counts"], self.num_classes
        for split in ("train", "test"):
            count = counts[split]
            path = self.root / self.manifest["files"][f"{split}_labels"]
            labels = self._array(f"{split}_labels", mmap=False)
            if labels.dtype != np.int64 or labels.shape != (count,):
                raise DataError(
                    f"{path}: expected {count} int64 labels (the manifest's count), found {labels.dtype} {labels.shape}"
                )
            if count and (int(labels.min()) < 0 or int(labels.max()) >= classes):
                raise DataError(f"{path}: labels fall outside 0..{classes - 1}")
            if self.format == "arrays":
                path = self.root / self.manifest["files"][f"{split}_images"]
                images = self._array(f"{split}_images")
                expected = (count, self.image_size, self.image_size, self.channels)
                if images.dtype != np.uint8 or images.shape != expected:
                    raise DataError(
                        f"{path}: expected uint8 images of shape {expected} (the manifest's), "
                        f"found {images.dtype} {images.shape}"
                    )
            else:
                shard, index = self.encoded(split)
                path = self.root / self.manifest["files"][f"{split}_index"]
                if index.dtype != np.int64 or index.shape != (count, 2):
                    raise DataError(f"{path}: expected a ({count}, 2) int64 index, found {index.dtype} {index.shape}")
                size = shard.stat().st_size
                if count and (
                    index.min() < 0 or (index[:, 1] == 0).any() or int((index[:, 0] + index[:, 1]).max()) > size
                ):
                    raise DataError(f"{path}: entries point outside {shard.name} ({size} bytes) or are empty")

    # -- facts ---------------------------------------------------------------------------------

    @property
    def format(self) -> str:
        return str(self.manifest["format"])

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.manifest["classes"])

    @property
    def channels(self) -> int:
        return int(self.manifest["channels"])

    @property
    def image_size(self) -> int | None:
        """Stored square size for the arrays format; None for encoded images (sizes vary)."""
        size = self.manifest.get("image_size")
        return int(size) if size is not None else None

    @property
    def mean(self) -> list[float]:
        return [float(v) for v in self.manifest["normalization"]["mean"]]

    @property
    def std(self) -> list[float]:
        return [float(v) for v in self.manifest["normalization"]["std"]]

    @property
    def digest(self) -> str:
        return str(self.manifest["digest"])

    def search_split(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices into the training split of the search "train" and "val" halves."""
        split = self.manifest["search_split"]
        return torch.tensor(split["train"], dtype=torch.long), torch.tensor(split["val"], dtype=torch.long)

    # -- data ------------------------------------------------------------------------------------

    def _array(self, key: str, mmap: bool = True) -> npt.NDArray[Any]:
        path = self.root / self.manifest["files"][key]
        try:
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DataError(f"cannot read {path}: {reason}") from None
        if not isinstance(array, np.ndarray):  # an .npz archive under an .npy name
            raise DataError(f"{path} does not hold a single NumPy array")
        return array

    def labels(self, split: Split) -> npt.NDArray[np.int64]:
        return np.asarray(self._array(f"{split}_labels", mmap=False), dtype=np.int64)

    def images(self, split: Split) -> npt.NDArray[np.uint8]:
        """Arrays format: (N, H, W, C) uint8, memory-mapped."""
        return self._array(f"{split}_images")

    def encoded(self, split: Split) -> tuple[Path, npt.NDArray[np.int64]]:
        """Encoded format: the shard file and its (offset, length) index."""
        return self.root / self.manifest["files"][f"{split}_images"], self._array(f"{split}_index", mmap=False)


# -- the manifest's schema -------------------------------------------------------------------------

_ARRAY_FILES = {
    "arrays": ("train_images", "train_labels", "test_images", "test_labels"),
    "encoded": ("train_images", "train_index", "train_labels", "test_images", "test_index", "test_labels"),
}


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _finite_list(value: Any, length: int) -> TypeGuard[list[float]]:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in value)
    )


def _check_manifest(manifest: dict[str, Any], path: Path) -> None:
    """The manifest's keys and types (one line naming the first problem): what every reader of a
    prepared dataset relies on without looking again."""

    def fail(problem: str) -> DataError:
        return DataError(f"{path}: {problem}")

    data_format = manifest.get("format")
    if data_format not in _ARRAY_FILES:
        raise fail(f"unknown format {data_format!r} (expected arrays or encoded)")
    classes = manifest.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise fail("'classes' must be a non-empty list of class names")
    if manifest.get("num_classes", len(classes)) != len(classes):
        raise fail(f"num_classes {manifest.get('num_classes')!r} differs from the {len(classes)} class names")
    channels = manifest.get("channels")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise fail(f"'channels' must be 1 or 3, found {channels!r}")
    size = manifest.get("image_size")
    if data_format == "arrays" and (not _is_count(size) or size == 0):
        raise fail(f"'image_size' must be a positive integer for the arrays format, found {size!r}")
    counts = manifest.get("counts")
    if not isinstance(counts, dict) or not all(_is_count(counts.get(k)) for k in ("train", "test")):
        raise fail("'counts' must give the train and test image counts")
    norm = manifest.get("normalization")
    mean, std = (norm.get(k) for k in ("mean", "std")) if isinstance(norm, dict) else (None, None)
    if not (_finite_list(mean, channels) and _finite_list(std, channels) and min(std) > 0):
        raise fail(f"'normalization' must give {channels} finite means and {channels} positive stds")
    split = manifest.get("search_split")
    halves = [split.get(k) for k in ("train", "val")] if isinstance(split, dict) else [None, None]
    for half in halves:
        if not isinstance(half, list) or not all(_is_count(i) and i < counts["train"] for i in half):
            raise fail(f"'search_split' must list indices of the {counts['train']} training images")
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(_ARRAY_FILES[data_format]):
        raise fail(f"'files' must name exactly {', '.join(_ARRAY_FILES[data_format])}")
    for name in files.values():
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
            raise fail(f"file name {name!r} must be a plain name inside the dataset directory")
    if not isinstance(manifest.get("digest"), str):
        raise fail("'digest' must be a string")
