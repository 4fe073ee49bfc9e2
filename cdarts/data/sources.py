"""Readers for every data source: each returns the training and test splits as plain data.

Array sources (synthetic, digits, CIFAR, MNIST-layout IDX) give uint8 images (N, H, W, C); image folders give the
list of image files, which the data-prep stage validates and packs into shards.
"""

from __future__ import annotations

import os
import stat
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
from cdarts.data.mnist import FASHION_MNIST_CLASSES, read_mnist
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
        return _checked(_synthetic(config), "synthetic data")
    if config.source == "digits":
        return _checked(_digits(config), "scikit-learn digits")
    assert config.location is not None
    location = Path(config.location)
    if not location.exists():
        raise DataError(f"data location {location} does not exist")
    if config.source in ("cifar10", "cifar100"):
        source = _cifar(location, config.source)
    elif config.source in ("mnist", "fashion-mnist"):
        source = _mnist(location, config)
    else:
        source = _image_folder(location, config.test_fraction)
    return _checked(source, str(location))


def _checked(source: SourceData, origin: str) -> SourceData:
    """The last check of every source's splits: uint8 (N, H, W, C) images with 1 or 3 channels,
    flat int64 labels in 0..classes-1, one label per image."""
    for name, split in (("train", source.train), ("test", source.test)):
        labels = split.labels
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.ndim != 1:
            raise DataError(f"{origin}: the {name} labels are not a flat int64 array")
        count = len(split.files) if isinstance(split, FileSplit) else len(split.images)
        if len(labels) != count:
            raise DataError(f"{origin}: the {name} split has {count} images but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(source.classes)):
            raise DataError(f"{origin}: {name} labels fall outside 0..{len(source.classes) - 1}")
        if isinstance(split, ArraySplit):
            images = split.images
            if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
                kind = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
                raise DataError(f"{origin}: the {name} images must be uint8 (N, H, W, C), got {kind}")
            if images.shape[-1] not in (1, 3) or images.shape[1] != images.shape[2] or images.shape[1] < 1:
                raise DataError(f"{origin}: the {name} images have shape {images.shape}; expected N x S x S x (1 or 3)")
    return source


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
    if (
        not isinstance(digits.images, np.ndarray)
        or digits.images.ndim != 3
        or digits.images.dtype.kind not in "iuf"
        or not np.isfinite(digits.images).all()
    ):
        raise DataError("scikit-learn digits: the images are not an (N, 8, 8) array of finite numbers")
    if not isinstance(digits.target, np.ndarray) or digits.target.dtype.kind not in "iu":
        raise DataError("scikit-learn digits: the targets are not integers")
    if digits.target.shape != (len(digits.images),):
        raise DataError(f"scikit-learn digits: {len(digits.images)} images but {digits.target.size} targets")
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


# -- MNIST layout (IDX files) -----------------------------------------------------------------------

_RESIZE_CHUNK = 4096


def _mnist(location: Path, config: DataConfig) -> SourceData:
    """The IDX set's own train/t10k splits, grey (N, S, S, 1) at ``data.image_size``."""
    names = FASHION_MNIST_CLASSES if config.source == "fashion-mnist" else None
    splits = read_mnist(location, names)
    return SourceData(
        classes=splits.classes,
        train=ArraySplit(_grey_at_size(splits.train_images, config.image_size), splits.train_labels),
        test=ArraySplit(_grey_at_size(splits.test_images, config.image_size), splits.test_labels),
    )


def _grey_at_size(images: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint8]:
    """uint8 (N, H, H) -> uint8 (N, size, size, 1): kept as stored at their own size, else resized
    bilinearly (antialiased, as the digits are) in chunks, so memory stays near the output's."""
    if images.shape[1] == size:
        return images[..., None]
    out = np.empty((len(images), size, size, 1), dtype=np.uint8)
    for start in range(0, len(images), _RESIZE_CHUNK):
        chunk = torch.from_numpy(images[start : start + _RESIZE_CHUNK]).float().unsqueeze(1)
        chunk = torch.nn.functional.interpolate(
            chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out[start : start + len(chunk)] = chunk.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


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
        return {k.decode("latin-1") if isinstance(k, bytes) else str(k): v for k, v in data.items()}


def _cifar(location: Path, source: str) -> SourceData:
    layout = _CIFAR_LAYOUT[source]
    with _CifarFiles(location, layout.folder) as files:
        return _read_cifar(files, layout)


def _cifar_classes(files: _CifarFiles, layout: _CifarLayout) -> list[str]:
    where = files.describe(layout.meta)
    meta = files.load(layout.meta)
    if layout.names_key not in meta:
        raise DataError(f"{where} lacks {layout.names_key!r} (the class names)")
    names = meta[layout.names_key]
    if not isinstance(names, list | tuple) or not names:
        raise DataError(f"{where}: {layout.names_key!r} must be a non-empty list of class names")
    classes = []
    for name in names:
        if isinstance(name, bytes):
            try:
                name = name.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{where}: class name {name[:40]!r} is not UTF-8 text") from None
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{where}: class names must be non-empty strings, found {type(name).__name__} {name!r:.40}")
        classes.append(name)
    duplicated = sorted({n for n in classes if classes.count(n) > 1})
    if duplicated:
        raise DataError(f"{where}: class names repeat: {', '.join(duplicated[:5])}")
    return classes


def _cifar_images(value: Any, where: str) -> npt.NDArray[np.uint8]:
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.ndim != 2 or value.shape[1] != 3072:
        found = (
            f"a {value.dtype} array of shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
        )
        raise DataError(f"{where}: 'data' must be a uint8 array of shape (N, 3072), found {found}")
    return value


def _cifar_labels(value: Any, count: int, num_classes: int, where: str, key: str) -> npt.NDArray[np.int64]:
    """Labels as CIFAR stores them (a list of ints; an integer array is accepted too), strictly:
    no floats, bools, strings or nested lists, one per image, each in 0..num_classes-1."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind not in "iu":
            raise DataError(
                f"{where}: {key!r} must be a flat list of integers, found a {value.dtype} array {value.shape}"
            )
        values: Any = value
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, bool | np.bool_) or not isinstance(item, int | np.integer):
                raise DataError(
                    f"{where}: {key!r} must be a flat list of integers, found {type(item).__name__} {item!r:.40}"
                )
        values = value
    else:
        raise DataError(f"{where}: {key!r} must be a list of integers, found {type(value).__name__}")
    if len(values) != count:
        raise DataError(f"{where}: {count} images but {len(values)} labels")
    if count and (min(values) < 0 or max(values) >= num_classes):
        bad = next(int(v) for v in values if not 0 <= v < num_classes)
        raise DataError(f"{where}: labels outside 0..{num_classes - 1} (found {bad})")
    return np.asarray(values, dtype=np.int64)


def _read_cifar(files: _CifarFiles, layout: _CifarLayout) -> SourceData:
    classes = _cifar_classes(files, layout)

    def read(batch_names: tuple[str, ...]) -> ArraySplit:
        images, labels = [], []
        for name in batch_names:
            where = files.describe(name)
            batch = files.load(name)
            for key in ("data", layout.label_key):
                if key not in batch:
                    raise DataError(f"{where} lacks {key!r}")
            data = _cifar_images(batch["data"], where)
            labels.append(_cifar_labels(batch[layout.label_key], data.shape[0], len(classes), where, layout.label_key))
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        return ArraySplit(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels))

    return SourceData(classes, read(layout.train), read(layout.test))


# -- image folders -------------------------------------------------------------------------------------


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


# Where a symbolic link named like an image may never lead: kernel and device pseudo-files.
_PSEUDO_FILESYSTEMS = (Path("/dev"), Path("/proc"), Path("/sys"))
_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
)


def _require_regular_file(path: Path) -> None:
    """Refuse an entry named like an image that is not a regular file (checked with ``stat``,
    which never opens it: a FIFO cannot block us, a device is never read)."""
    link = " (through a symbolic link)" if path.is_symlink() else ""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"image folder entry {path} is a dangling symbolic link") from None
    except OSError as error:
        raise DataError(f"cannot inspect image folder entry {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
        raise DataError(f"image folder entry {path} is {kind}{link}; only regular image files are read")
    if link:
        target = Path(os.path.realpath(path))
        if any(target.is_relative_to(pseudo) for pseudo in _PSEUDO_FILESYSTEMS):
            raise DataError(
                f"image folder entry {path} is a symbolic link to {target}; only regular image files are read"
            )


def _image_files(folder: Path) -> Iterator[Path]:
    """Files named like images under ``folder`` (hidden names and other extensions are ignored;
    an entry named like an image that is not a regular file is refused)."""
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
            _require_regular_file(path)
            yield path


def _scan(root: Path, classes: list[str], minimum: int) -> FileSplit:
    """Every class's images; a class with fewer than ``minimum`` is refused (val/ may lack some)."""
    files, labels = [], []
    for index, name in enumerate(classes):
        folder = root / name
        found = list(_image_files(folder)) if folder.is_dir() else []
        if not found and root.name != "val":
            raise DataError(f"class folder {folder} holds no images")
        if len(found) < minimum:
            raise DataError(
                f"class {name!r} has {len(found)} image(s) in {folder}; at least {minimum} are needed for the split"
            )
        files.extend(found)
        labels.extend([index] * len(found))
    return FileSplit(files, np.asarray(labels, dtype=np.int64))


# The search split cuts every training class into two halves: each needs an image.
_SEARCH_MINIMUM = 2


def held_out_count(count: int, fraction: float) -> int:
    """How many of a class's ``count`` images :func:`stratified_fraction` holds out for testing."""
    return max(1, round(count * fraction)) if count > 1 else 0


def minimum_per_class(test_fraction: float) -> int:
    """The fewest images a class folder needs so that ``test_fraction`` holds out at least one
    for testing and leaves the search split's two halves one each."""
    count = 1
    while held_out_count(count, test_fraction) < 1 or count - held_out_count(count, test_fraction) < _SEARCH_MINIMUM:
        count += 1
    return count


def _image_folder(root: Path, test_fraction: float) -> SourceData:
    """``root/train/<class>/...`` (+ ``root/val/<class>/...`` as the test split), or class folders
    directly under ``root`` (a seeded, stratified ``test_fraction`` is then held out)."""
    if not root.is_dir():
        raise DataError(f"image folder {root} is not a directory")
    if (root / "train").is_dir():
        classes = [p.name for p in _class_folders(root / "train")]
        if not classes:
            raise DataError(f"{root / 'train'} has no class folders")
        train = _scan(root / "train", classes, _SEARCH_MINIMUM)
        if not (root / "val").is_dir():
            raise DataError(f"{root} has train/ but no val/ folder for the test split")
        unknown = sorted({p.name for p in _class_folders(root / "val")} - set(classes))
        if unknown:
            raise DataError(f"{root / 'val'} has classes missing from train/: {', '.join(unknown[:5])}")
        return SourceData(classes, train, _scan(root / "val", classes, 0))
    classes = [p.name for p in _class_folders(root)]
    if len(classes) < 2:
        raise DataError(f"image folder {root} needs at least two class folders")
    everything = _scan(root, classes, minimum_per_class(test_fraction))
    test_idx = set(stratified_fraction(torch.from_numpy(everything.labels), test_fraction, DIGITS_TEST_SEED).tolist())
    pick = [i for i in range(len(everything.files)) if i not in test_idx], sorted(test_idx)
    train, test = (
        FileSplit([everything.files[i] for i in idx], everything.labels[idx]) for idx in (np.asarray(p) for p in pick)
    )
    return SourceData(classes, train, test)
