"""MNIST-layout data sets (MNIST, Fashion-MNIST, KMNIST, EMNIST splits): the four IDX files found
in a directory or a tar archive, read without extracting and checked against each other.

The files are ``[prefix]train-images-idx3-ubyte``, ``[prefix]train-labels-idx1-ubyte``,
``[prefix]t10k-images-idx3-ubyte`` and ``[prefix]t10k-labels-idx1-ubyte`` (``.idx3`` after a dot is
accepted too), each optionally ``.gz``; where both a plain and a ``.gz`` copy exist (torchvision's
``raw/`` folders) the plain one is read. They may sit up to two folders below the location.
"""

from __future__ import annotations

import re
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np
import numpy.typing as npt

from cdarts.config import MAX_CLASSES
from cdarts.data.idx import read_idx_images, read_idx_labels
from cdarts.errors import DataError

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_ROLES = ("train-images", "train-labels", "t10k-images", "t10k-labels")
_NAME = re.compile(r"^(?P<prefix>.*?)(?P<split>train|t10k)-(?P<kind>images[-.]idx3|labels[-.]idx1)-ubyte(\.gz)?$")
_MAX_DEPTH = 2
_Opener = Callable[[str], AbstractContextManager[IO[bytes]]]


@dataclass
class MnistSplits:
    """Both splits as stored: images uint8 (N, S, S), labels int64 (N,)."""

    classes: list[str]
    train_images: npt.NDArray[np.uint8]
    train_labels: npt.NDArray[np.int64]
    test_images: npt.NDArray[np.uint8]
    test_labels: npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Entry:
    """One IDX file: its path (in the directory or the archive), stored length, gzip or not."""

    path: str
    size: int
    gz: bool


def read_mnist(location: Path, class_names: tuple[str, ...] | None) -> MnistSplits:
    """Read an MNIST-layout set; ``class_names`` fixes the classes (labels must index them),
    else they are ``"0"``..``"K-1"`` with K one more than the largest training label."""
    with _open_files(location) as (entries, opener, describe):
        files = _pick_set(entries, location)
        arrays = {}
        for role in _ROLES:
            entry = files[role]
            where = describe(entry.path)
            with opener(entry.path) as handle:
                size = None if entry.gz else entry.size
                reader = read_idx_images if role.endswith("images") else read_idx_labels
                arrays[role] = reader(handle, size, where)
        for split in ("train", "t10k"):
            images, labels = arrays[f"{split}-images"], arrays[f"{split}-labels"]
            if len(images) != len(labels):
                raise DataError(
                    f"{describe(files[f'{split}-images'].path)} holds {len(images)} images but"
                    f" {describe(files[f'{split}-labels'].path)} holds {len(labels)} labels"
                )
        if arrays["train-images"].shape[1:] != arrays["t10k-images"].shape[1:]:
            raise DataError(
                f"{describe(files['t10k-images'].path)}: training images are {arrays['train-images'].shape[1]} px"
                f" but test images are {arrays['t10k-images'].shape[1]} px"
            )
        classes = _classes(arrays["train-labels"], class_names, describe(files["train-labels"].path))
        for split in ("train", "t10k"):
            labels = arrays[f"{split}-labels"]
            if int(labels.max()) >= len(classes):
                raise DataError(
                    f"{describe(files[f'{split}-labels'].path)}: label {int(labels.max())} is outside"
                    f" 0..{len(classes) - 1} ({len(classes)} classes)"
                )
    return MnistSplits(
        classes,
        arrays["train-images"],
        arrays["train-labels"].astype(np.int64),
        arrays["t10k-images"],
        arrays["t10k-labels"].astype(np.int64),
    )


def _classes(train_labels: npt.NDArray[np.uint8], names: tuple[str, ...] | None, where: str) -> list[str]:
    if names is not None:
        return list(names)
    count = int(train_labels.max()) + 1
    if count < 2:
        raise DataError(f"{where}: every training label is 0; at least two classes are needed")
    return [str(i) for i in range(min(count, MAX_CLASSES))]


def _pick_set(entries: list[_Entry], location: Path) -> dict[str, _Entry]:
    """The one complete set of four files; plain files win over their ``.gz`` twins."""
    sets: dict[str, dict[str, _Entry]] = {}
    for entry in entries:
        match = _NAME.match(PurePosixPath(entry.path).name)
        if match is None:
            continue
        folder = str(PurePosixPath(entry.path).parent)
        key = f"{folder}/{match['prefix']}" if folder != "." else match["prefix"]
        chosen = sets.setdefault(key, {})
        role = f"{match['split']}-{match['kind'][:6]}"
        current = chosen.get(role)
        if current is None or (current.gz and not entry.gz):
            chosen[role] = entry
    if not sets:
        raise DataError(f"{location} holds no train-images-idx3-ubyte[.gz] (an MNIST-layout data set)")
    if len(sets) > 1:
        listed = ", ".join(repr(k or "./") for k in sorted(sets)[:4])
        raise DataError(f"{location} holds several MNIST-layout sets ({listed}); point data.location at one")
    ((name, chosen),) = sets.items()
    missing = [role for role in _ROLES if role not in chosen]
    if missing:
        idx = {"images": "idx3", "labels": "idx1"}
        wanted = ", ".join(f"{name}{r}-{idx[r.split('-')[1]]}-ubyte[.gz]" for r in missing)
        raise DataError(f"{location} lacks {wanted}")
    return chosen


@contextmanager
def _open_files(location: Path) -> Iterator[tuple[list[_Entry], _Opener, Callable[[str], str]]]:
    """The IDX-named entries of a directory or tar archive, an opener and a describer."""
    if location.is_file():
        try:
            archive = tarfile.open(location, "r:*")  # noqa: SIM115 - closed below
            members = {m.name.lstrip("./") or m.name: m for m in archive.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
            raise DataError(f"{location} is not a readable tar archive ({type(error).__name__})") from None
        try:
            entries = [
                _Entry(name, m.size, name.endswith(".gz"))
                for name, m in members.items()
                if name.count("/") <= _MAX_DEPTH and _NAME.match(PurePosixPath(name).name)
            ]

            @contextmanager
            def open_member(name: str) -> Iterator[IO[bytes]]:
                try:
                    handle = archive.extractfile(members[name])
                except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
                    raise DataError(f"{location}:{name} cannot be read ({type(error).__name__})") from None
                if handle is None:  # pragma: no cover - only regular members are listed
                    raise DataError(f"{location}:{name} is not a regular file")
                with handle:
                    yield handle

            yield entries, open_member, lambda name: f"{location}:{name}"
        finally:
            archive.close()
        return
    if not location.is_dir():
        raise DataError(f"data location {location} is neither a directory nor an archive")

    @contextmanager
    def open_path(name: str) -> Iterator[IO[bytes]]:
        with (location / name).open("rb") as handle:
            yield handle

    yield _directory_entries(location), open_path, lambda name: str(location / name)


def _directory_entries(root: Path) -> list[_Entry]:
    """IDX-named regular files at most two folders below ``root`` (checked with ``stat``, so a
    FIFO or device named like one is refused without being opened)."""
    entries = []
    for depth in range(_MAX_DEPTH + 1):
        for path in sorted(root.glob("/".join(["*"] * (depth + 1)))):
            if path.name.startswith(".") or not _NAME.match(path.name):
                continue
            try:
                mode = path.stat().st_mode
            except OSError:
                raise DataError(f"{path} cannot be inspected (a dangling symbolic link?)") from None
            if not stat.S_ISREG(mode):
                raise DataError(f"{path} is not a regular file; only regular IDX files are read")
            entries.append(_Entry(path.relative_to(root).as_posix(), path.stat().st_size, path.name.endswith(".gz")))
    return entries
