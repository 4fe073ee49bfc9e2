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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
        if not isinstance(manifest, dict) or manifest.get("schema_version") != MANIFEST_SCHEMA_VERSION:
            raise DataError(f"{path}: unsupported manifest schema_version {manifest.get('schema_version')!r}")
        for name in manifest["files"].values():
            if not (root / name).is_file():
                raise DataError(f"prepared dataset {root} is incomplete: {name} is missing")
        return cls(root, manifest)

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
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)  # type: ignore[no-any-return]
        except (ValueError, OSError) as error:
            raise DataError(f"cannot read {path}: {error}") from None

    def labels(self, split: Split) -> npt.NDArray[np.int64]:
        return np.asarray(self._array(f"{split}_labels", mmap=False), dtype=np.int64)

    def images(self, split: Split) -> npt.NDArray[np.uint8]:
        """Arrays format: (N, H, W, C) uint8, memory-mapped."""
        return self._array(f"{split}_images")

    def encoded(self, split: Split) -> tuple[Path, npt.NDArray[np.int64]]:
        """Encoded format: the shard file and its (offset, length) index."""
        return self.root / self.manifest["files"][f"{split}_images"], self._array(f"{split}_index", mmap=False)
