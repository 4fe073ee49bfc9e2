"""Readers for every data source: each returns the training and test splits as plain data.

Array sources (synthetic, digits, CIFAR) give uint8 images (N, H, W, C); image folders give the
list of image files, which the data-prep stage validates and packs into shards.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import torch

from cdarts.config import DataConfig
from cdarts.data.restricted_pickle import restricted_load
from cdarts.data.splits import stratified_fraction
from cdarts.data.synthetic import make_synthetic
from cdarts.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"})
# The digits test split never changes between experiments: it is drawn with a fixed seed.
DIGITS_TEST_SEED = 20_200_617


@dataclass
class ArraySplit:
    images: npt.NDArray[np.uint8]  # (N, H, W, C)
    labels: npt.NDArray[np.int64]  # (N,)


@dataclass
class FileSplit:
    files: list[Path]
    labels: npt.NDArray[np.int64]


@dataclass
class SourceData:
    classes: list[str]
    train: ArraySplit | FileSplit
    test: ArraySplit | FileSplit


def read_source(config: DataConfig) -> SourceData:
    """Read the configured source; problems raise DataError naming the file."""
    if config.source == "synthetic":
        return _synthetic(config)
    if config.source == "digits":
        return _digits(config)
    assert config.location is not None
    location = Path(config.location)
    if not location.exists():
        raise DataError(f"data location {location} does not exist")
    if config.source in ("cifar10", "cifar100"):
        return _cifar(location, config.source)
    return _image_folder(location, config.test_fraction)


# -- synthetic and digits ------------------------------------------------------------------------


def _synthetic(config: DataConfig) -> SourceData:
    num_classes = config.num_classes or 10
    images, labels = make_synthetic(
        config.num_train + config.num_test, config.channels, config.image_size, num_classes, seed=0
    )
    images_nhwc = images.permute(0, 2, 3, 1).numpy()
    labels_np = labels.numpy().astype(np.int64)
    cut = config.num_train
    return SourceData(
        classes=[f"class_{i}" for i in range(num_classes)],
        train=ArraySplit(images_nhwc[:cut], labels_np[:cut]),
        test=ArraySplit(images_nhwc[cut:], labels_np[cut:]),
    )


def _digits(config: DataConfig) -> SourceData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 8x8 greyscale in 0..16 -> uint8 at the configured size (bilinear, antialiased).
    images = torch.from_numpy(digits.images).float().unsqueeze(1) * (255.0 / 16.0)
    if config.image_size != images.shape[-1]:
        images = torch.nn.functional.interpolate(
            images, size=(config.image_size, config.image_size), mode="bilinear", antialias=True, align_corners=False
        )
    images_nhwc = images.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    labels = np.asarray(digits.target, dtype=np.int64)
    test_idx = stratified_fraction(torch.from_numpy(labels), config.test_fraction, DIGITS_TEST_SEED).numpy()
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[test_idx] = False
    return SourceData(
        classes=[str(i) for i in range(10)],
        train=ArraySplit(images_nhwc[train_mask], labels[train_mask]),
        test=ArraySplit(images_nhwc[test_idx], labels[test_idx]),
    )


# -- CIFAR -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CifarLayout:
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str


_CIFAR_LAYOUT = {
    "cifar10": _CifarLayout(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        "labels",
        "label_names",
    ),
    "cifar100": _CifarLayout("cifar-100-python", ("train",), ("test",), "meta", "fine_labels", "fine_label_names"),
}


class _CifarFiles:
    """Access to the CIFAR files in a directory or inside a .tar.gz, without extracting."""

    def __init__(self, location: Path, folder: str) -> None:
        self.location = location
        self.folder = folder
        self._tar: tarfile.TarFile | None = None
        if location.is_file():
            try:
                self._tar = tarfile.open(location, "r:*")  # noqa: SIM115 - closed by __exit__
                self._members = {m.name.lstrip("./"): m for m in self._tar.getmembers() if m.isfile()}
            except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
                raise DataError(f"{location} is not a readable tar archive ({type(error).__name__})") from None
        else:
            self.root = location / folder if (location / folder).is_dir() else location

    def __enter__(self) -> _CifarFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tar is not None:
            self._tar.close()

    def describe(self, name: str) -> str:
        return f"{self.location}:{self.folder}/{name}" if self._tar else str(self.root / name)

    def open(self, name: str) -> IO[bytes]:
        if self._tar is not None:
            member = self._members.get(f"{self.folder}/{name}")
            handle = self._tar.extractfile(member) if member is not None else None
            if handle is None:
                raise DataError(f"{self.location} lacks {self.folder}/{name}")
            return handle
        path = self.root / name
        if not path.is_file():
            raise DataError(f"missing CIFAR file {path}")
        return path.open("rb")

    def load(self, name: str) -> dict[str, Any]:
        with self.open(name) as handle:
            try:
                data = restricted_load(handle)
            except Exception as error:  # any unpickling failure means a corrupt or hostile file
                raise DataError(f"{self.describe(name)} is corrupt or truncated ({type(error).__name__})") from None
        if not isinstance(data, dict):
            raise DataError(f"{self.describe(name)} does not hold a CIFAR dictionary")
        return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in data.items()}


def _cifar(location: Path, source: str) -> SourceData:
    layout = _CIFAR_LAYOUT[source]
    with _CifarFiles(location, layout.folder) as files:
        return _read_cifar(files, layout)


def _read_cifar(files: _CifarFiles, layout: _CifarLayout) -> SourceData:
    meta = files.load(layout.meta)
    names = meta.get(layout.names_key)
    if not isinstance(names, list) or not names:
        raise DataError(f"{files.describe(layout.meta)} has no class names")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    def read(batch_names: tuple[str, ...]) -> ArraySplit:
        images, labels = [], []
        for name in batch_names:
            batch = files.load(name)
            data, batch_labels = batch.get("data"), batch.get(layout.label_key)
            if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
                raise DataError(f"{files.describe(name)}: 'data' must be a uint8 array of shape (N, 3072)")
            if batch_labels is None or len(batch_labels) != data.shape[0]:
                raise DataError(f"{files.describe(name)}: {data.shape[0]} images but a different number of labels")
            label_array = np.asarray(batch_labels, dtype=np.int64)
            if label_array.min(initial=0) < 0 or label_array.max(initial=0) >= len(classes):
                raise DataError(f"{files.describe(name)}: labels outside 0..{len(classes) - 1}")
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(label_array)
        return ArraySplit(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels))

    return SourceData(classes, read(layout.train), read(layout.test))


# -- image folders -------------------------------------------------------------------------------------


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
            yield path


def _scan(root: Path, classes: list[str]) -> FileSplit:
    files, labels = [], []
    for index, name in enumerate(classes):
        folder = root / name
        found = list(_image_files(folder)) if folder.is_dir() else []
        if not found and root.name != "val":
            raise DataError(f"class folder {folder} holds no images")
        files.extend(found)
        labels.extend([index] * len(found))
    return FileSplit(files, np.asarray(labels, dtype=np.int64))


def _image_folder(root: Path, test_fraction: float) -> SourceData:
    """``root/train/<class>/...`` (+ ``root/val/<class>/...`` as the test split), or class folders
    directly under ``root`` (a seeded, stratified ``test_fraction`` is then held out)."""
    if not root.is_dir():
        raise DataError(f"image folder {root} is not a directory")
    if (root / "train").is_dir():
        classes = [p.name for p in _class_folders(root / "train")]
        if not classes:
            raise DataError(f"{root / 'train'} has no class folders")
        train = _scan(root / "train", classes)
        if not (root / "val").is_dir():
            raise DataError(f"{root} has train/ but no val/ folder for the test split")
        unknown = sorted({p.name for p in _class_folders(root / "val")} - set(classes))
        if unknown:
            raise DataError(f"{root / 'val'} has classes missing from train/: {', '.join(unknown[:5])}")
        return SourceData(classes, train, _scan(root / "val", classes))
    classes = [p.name for p in _class_folders(root)]
    if len(classes) < 2:
        raise DataError(f"image folder {root} needs at least two class folders")
    everything = _scan(root, classes)
    test_idx = set(stratified_fraction(torch.from_numpy(everything.labels), test_fraction, DIGITS_TEST_SEED).tolist())
    pick = [i for i in range(len(everything.files)) if i not in test_idx], sorted(test_idx)
    train, test = (
        FileSplit([everything.files[i] for i in idx], everything.labels[idx]) for idx in (np.asarray(p) for p in pick)
    )
    return SourceData(classes, train, test)
