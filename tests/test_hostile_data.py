"""Hostile data (issue 17): malformed arrays in otherwise valid CIFAR batches, unusual entries in
image folders, classes too small for the split, and tampered prepared datasets are each refused
with one DataError line naming the file, and no prepared dataset is left behind."""

from __future__ import annotations

import json
import os
import pickle
import socket
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.config import DataConfig
from cdarts.data.prepared import PreparedDataset
from cdarts.data.sources import held_out_count, minimum_per_class
from cdarts.data.splits import stratified_fraction
from cdarts.errors import DataError
from cdarts.runners.data_prep import run_data_prep
from tests.conftest import CONFIGS
from tests.test_data_prep import write_cifar10, write_image_folder

TINY = str(CONFIGS / "tiny.yaml")
runner = CliRunner()


def _refused(config: DataConfig, out: Path, *fragments: str) -> str:
    """Data prep refuses with one line holding every fragment; no (partial) dataset is left."""
    with pytest.raises(DataError) as caught:
        run_data_prep(config, 0, out)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.partial-*"))
    return message


def _one_line_cli_error(args: list[str], *fragments: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cdarts: error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# -- CIFAR batches ------------------------------------------------------------------------------


def _rewrite(name: str, change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    """Damage one batch (or the meta file) of a valid CIFAR-10 folder in place."""

    def damage(folder: Path) -> None:
        data = pickle.loads((folder / name).read_bytes())
        change(data)
        (folder / name).write_bytes(pickle.dumps(data, protocol=2))

    return damage


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.__setitem__(key, value)


def _ragged() -> np.ndarray:
    ragged = np.empty(20, dtype=object)
    for i in range(20):
        ragged[i] = np.zeros(3072 if i % 2 else 100, np.uint8)
    return ragged


CIFAR_DAMAGE = {
    "float labels": (_rewrite("data_batch_3", _set("labels", [0.5] * 20)), "data_batch_3", "found float 0.5"),
    "string labels": (_rewrite("data_batch_3", _set("labels", ["cat"] * 20)), "data_batch_3", "found str 'cat'"),
    "bool labels": (_rewrite("data_batch_3", _set("labels", [True] * 20)), "data_batch_3", "found bool True"),
    "nested labels": (_rewrite("data_batch_3", _set("labels", [[1, 2]] * 20)), "data_batch_3", "found list [1, 2]"),
    "labels not a list": (_rewrite("test_batch", _set("labels", 7)), "test_batch", "found int"),
    "float label array": (
        _rewrite("data_batch_1", _set("labels", np.zeros(20, np.float64))),
        "data_batch_1",
        "found a float64 array",
    ),
    "too few labels": (_rewrite("data_batch_2", _set("labels", [0] * 19)), "data_batch_2", "20 images but 19 labels"),
    "negative label": (
        _rewrite("data_batch_5", _set("labels", [0] * 19 + [-1])),
        "data_batch_5",
        "labels outside 0..9 (found -1)",
    ),
    "label == classes": (_rewrite("test_batch", _set("labels", [10] * 20)), "test_batch", "(found 10)"),
    "huge label": (_rewrite("test_batch", _set("labels", [2**70] * 20)), "test_batch", "labels outside 0..9"),
    "float32 data": (
        _rewrite("data_batch_4", _set("data", np.zeros((20, 3072), np.float32))),
        "data_batch_4",
        "found a float32 array of shape (20, 3072)",
    ),
    "wrong row size": (
        _rewrite("data_batch_4", _set("data", np.zeros((20, 3073), np.uint8))),
        "data_batch_4",
        "shape (20, 3073)",
    ),
    "ragged object data": (_rewrite("data_batch_4", _set("data", _ragged())), "data_batch_4", "found a object array"),
    "data as a list": (_rewrite("data_batch_4", _set("data", [[0] * 3072] * 20)), "data_batch_4", "found list"),
    "missing data": (_rewrite("data_batch_1", lambda d: d.pop("data")), "data_batch_1", "lacks 'data'"),
    "missing labels": (_rewrite("data_batch_1", lambda d: d.pop("labels")), "data_batch_1", "lacks 'labels'"),
    "numeric class names": (
        _rewrite("batches.meta", _set("label_names", list(range(10)))),
        "batches.meta",
        "class names must be non-empty strings, found int 0",
    ),
    "no class names": (_rewrite("batches.meta", lambda d: d.pop("label_names")), "batches.meta", "lacks 'label_names'"),
    "repeated class names": (
        _rewrite("batches.meta", _set("label_names", ["a"] * 10)),
        "batches.meta",
        "class names repeat: a",
    ),
}


@pytest.mark.parametrize("case", list(CIFAR_DAMAGE))
def test_malformed_cifar_arrays_are_refused_in_one_line(tmp_path: Path, case: str) -> None:
    damage, file_name, fragment = CIFAR_DAMAGE[case]
    folder = write_cifar10(tmp_path / "src")
    damage(folder)
    config = DataConfig(source="cifar10", location=str(tmp_path / "src"), image_size=32)
    _refused(config, tmp_path / "out", str(folder / file_name), fragment)


def test_malformed_cifar_labels_via_the_cli_exit_2_and_leave_no_manifest(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "src")
    _rewrite("data_batch_2", _set("labels", [1.0] * 20))(folder)
    out = tmp_path / "prepared"
    args = ["stage", "data-prep", "-c", TINY, "--source", f"cifar10:{tmp_path / 'src'}", "--out", str(out)]
    _one_line_cli_error(args, "data_batch_2", "must be a flat list of integers")
    assert not (out / "manifest.json").exists()


def test_integer_label_arrays_are_accepted(tmp_path: Path) -> None:
    """The strict check does not refuse what real CIFAR re-savers write (control case)."""
    folder = write_cifar10(tmp_path / "src")
    _rewrite("data_batch_1", _set("labels", np.arange(20, dtype=np.uint8) % 10))(folder)
    config = DataConfig(source="cifar10", location=str(tmp_path / "src"), image_size=32)
    prepared = run_data_prep(config, 0, tmp_path / "out")
    assert prepared.labels("train")[:20].tolist() == [i % 10 for i in range(20)]


def test_digits_arrays_are_checked_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn import datasets

    bad = SimpleNamespace(images=np.zeros((30, 8, 8)), target=np.zeros(29, dtype=np.int64))
    monkeypatch.setattr(datasets, "load_digits", lambda: bad)
    _refused(DataConfig(source="digits"), tmp_path / "out", "scikit-learn digits", "30 images but 29 targets")
    bad.target, bad.images = np.zeros(30, dtype=np.int64), np.full((30, 8, 8), np.nan)
    _refused(DataConfig(source="digits"), tmp_path / "out", "finite numbers")


# -- image folders -------------------------------------------------------------------------------


def _flat_folder(root: Path, per_class: int = 6) -> Path:
    return write_image_folder(root, classes=2, per_class=per_class, with_val=False)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _device_link(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _dangling(path: Path) -> None:
    path.symlink_to(path.parent / "no-such-image.png")


def _directory(path: Path) -> None:
    path.mkdir()
    (path / "inner.txt").write_text("a folder named like an image")


def _link_to_directory(path: Path) -> None:
    path.symlink_to(path.parent.parent)


def _proc_link(path: Path) -> None:
    path.symlink_to("/proc/self/environ")


ENTRIES = {
    "fifo": (_fifo, "is a named pipe (FIFO); only regular image files are read"),
    "symlink to /dev/zero": (_device_link, "is a character device (through a symbolic link)"),
    "dangling symlink": (_dangling, "is a dangling symbolic link"),
    "directory named like an image": (_directory, "is a directory; only regular"),
    "symlink to a directory": (_link_to_directory, "is a directory (through a symbolic link)"),
    "symlink into /proc": (_proc_link, "is a symbolic link to /proc/"),
}


@pytest.mark.parametrize("case", list(ENTRIES))
def test_non_regular_image_entries_are_refused_without_reading_them(tmp_path: Path, case: str) -> None:
    make, fragment = ENTRIES[case]
    root = _flat_folder(tmp_path / "imgs")
    entry = root / "class_1" / "zz_odd.png"
    make(entry)
    # A FIFO would block a reader forever and /dev/zero never ends: refusing in time proves that
    # neither was opened.
    _refused(DataConfig(source="imagefolder", location=str(root)), tmp_path / "out", str(entry), fragment)


def test_a_socket_named_like_an_image_is_refused(tmp_path: Path) -> None:
    root = _flat_folder(tmp_path / "i")
    entry = root / "class_0" / "s.jpg"
    if len(str(entry)) > 100:  # AF_UNIX paths are short
        pytest.skip("temporary path too long for a unix socket")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(entry))
        _refused(DataConfig(source="imagefolder", location=str(root)), tmp_path / "out", str(entry), "is a socket")
    finally:
        server.close()


def test_symlinks_to_regular_images_and_non_image_oddities_are_fine(tmp_path: Path) -> None:
    """Control: datasets built of symlinks to image files still prepare; a FIFO without an image
    extension is ignored like any other non-image file."""
    root = _flat_folder(tmp_path / "imgs")
    (root / "class_0" / "linked.png").symlink_to(root / "class_1" / "img_1.png")
    os.mkfifo(root / "class_0" / "pipe")
    prepared = run_data_prep(DataConfig(source="imagefolder", location=str(root)), 0, tmp_path / "out")
    assert prepared.manifest["counts"]["train"] + prepared.manifest["counts"]["test"] == 13


def test_a_device_symlink_via_the_cli_exits_2(tmp_path: Path) -> None:
    root = _flat_folder(tmp_path / "imgs")
    _device_link(root / "class_0" / "zero.jpg")
    out = tmp_path / "prepared"
    args = ["stage", "data-prep", "-c", TINY, "--source", f"imagefolder:{root}", "--out", str(out)]
    _one_line_cli_error(args, "zero.jpg", "character device")
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize(("fraction", "minimum"), [(0.2, 3), (0.5, 4), (0.75, 6)])
def test_a_class_too_small_for_the_split_is_refused_naming_it(tmp_path: Path, fraction: float, minimum: int) -> None:
    assert minimum_per_class(fraction) == minimum
    root = _flat_folder(tmp_path / "imgs", per_class=minimum)
    (root / "class_1" / "img_0.jpg").unlink()
    config = DataConfig(source="imagefolder", location=str(root), test_fraction=fraction)
    _refused(config, tmp_path / "out", f"class 'class_1' has {minimum - 1} image(s)", f"at least {minimum}")
    # One image more and the same folder prepares, with every class on both sides.
    (root / "class_1" / "img_0.jpg").write_bytes((root / "class_1" / "img_1.png").read_bytes())
    prepared = run_data_prep(config, 0, tmp_path / "out")
    assert set(prepared.labels("test").tolist()) == {0, 1}
    assert np.bincount(prepared.labels("train")).min() >= 2


def test_the_minimum_matches_the_held_out_split() -> None:
    for fraction in (0.05, 0.2, 0.33, 0.5, 0.9):
        for count in range(1, 40):
            labels = torch.zeros(count, dtype=torch.long)
            assert len(stratified_fraction(labels, fraction, 0)) == held_out_count(count, fraction)
        minimum = minimum_per_class(fraction)
        assert minimum - held_out_count(minimum, fraction) >= 2 and held_out_count(minimum, fraction) >= 1
        smaller = minimum - 1
        assert held_out_count(smaller, fraction) < 1 or smaller - held_out_count(smaller, fraction) < 2


def test_an_empty_class_folder_and_a_one_image_train_class_are_refused(tmp_path: Path) -> None:
    root = _flat_folder(tmp_path / "flat")
    (root / "class_2").mkdir()
    (root / "class_2" / "readme.txt").write_text("no images here")
    _refused(DataConfig(source="imagefolder", location=str(root)), tmp_path / "a", "class_2 holds no images")
    split = write_image_folder(tmp_path / "split", classes=2, per_class=4)
    for extra in sorted((split / "train" / "class_0").glob("img_*"))[1:]:
        extra.unlink()
    config = DataConfig(source="imagefolder", location=str(split))
    _refused(config, tmp_path / "b", "class 'class_0' has 1 image(s)", "at least 2")


# -- the prepared dataset's arrays -------------------------------------------------------------------


@pytest.fixture
def prepared_dir(tmp_path: Path) -> Path:
    config = DataConfig(source="synthetic", image_size=8, num_train=16, num_test=8, num_classes=2)
    return run_data_prep(config, 0, tmp_path / "prepared").root


def _manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "manifest.json").read_text())  # type: ignore[no-any-return]


def _load_refused(root: Path, *fragments: str) -> None:
    with pytest.raises(DataError) as caught:
        PreparedDataset.load(root)
    assert "\n" not in str(caught.value)
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)


PREPARED_DAMAGE = {
    "float labels": (
        lambda r: np.save(r / "train_labels.npy", np.zeros(16, np.float64)),
        "train_labels.npy",
        "expected 16 int64 labels (the manifest's count), found float64",
    ),
    "labels out of range": (
        lambda r: np.save(r / "test_labels.npy", np.full(8, 2, np.int64)),
        "test_labels.npy",
        "labels fall outside 0..1",
    ),
    "fewer images than the manifest": (
        lambda r: np.save(r / "train_images.npy", np.zeros((15, 8, 8, 3), np.uint8)),
        "train_images.npy",
        "expected uint8 images of shape (16, 8, 8, 3)",
    ),
    "float images": (
        lambda r: np.save(r / "test_images.npy", np.zeros((8, 8, 8, 3), np.float32)),
        "test_images.npy",
        "found float32",
    ),
    "object array": (
        lambda r: np.save(r / "test_labels.npy", np.array([{"x": 1}] * 8, dtype=object), allow_pickle=True),
        "test_labels.npy",
        "Object arrays cannot be loaded",
    ),
    "truncated npy": (
        lambda r: (r / "train_images.npy").write_bytes((r / "train_images.npy").read_bytes()[:300]),
        "cannot read",
        "train_images.npy",
    ),
}


@pytest.mark.parametrize("case", list(PREPARED_DAMAGE))
def test_tampered_prepared_arrays_are_refused_on_load(prepared_dir: Path, case: str) -> None:
    damage, *fragments = PREPARED_DAMAGE[case]
    damage(prepared_dir)
    _load_refused(prepared_dir, *fragments)


MANIFEST_DAMAGE = {
    "files missing": (lambda m: m.pop("files"), "'files' must name exactly"),
    "path outside": (lambda m: m["files"].__setitem__("test_labels", "../x.npy"), "must be a plain name"),
    "classes not strings": (lambda m: m.__setitem__("classes", [0, 1]), "'classes' must be a non-empty list"),
    "negative std": (lambda m: m["normalization"].__setitem__("std", [0.2, -1, 0.2]), "positive stds"),
    "search index beyond": (lambda m: m["search_split"]["val"].append(99), "'search_split' must list indices"),
    "unknown format": (lambda m: m.__setitem__("format", "parquet"), "unknown format 'parquet'"),
    "not an object": (None, "does not hold a manifest object"),
}


@pytest.mark.parametrize("case", list(MANIFEST_DAMAGE))
def test_malformed_manifests_are_refused_in_one_line(prepared_dir: Path, case: str) -> None:
    change, fragment = MANIFEST_DAMAGE[case]
    manifest: Any = _manifest(prepared_dir)
    if change is None:
        manifest = [manifest]
    else:
        change(manifest)
    (prepared_dir / "manifest.json").write_text(json.dumps(manifest))
    _load_refused(prepared_dir, str(prepared_dir / "manifest.json"), fragment)


def test_an_encoded_index_pointing_past_its_shard_is_refused(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", classes=2, per_class=4)
    prepared = run_data_prep(DataConfig(source="imagefolder", location=str(root)), 0, tmp_path / "out")
    index = np.load(prepared.root / "test_index.npy")
    index[-1, 1] += 10_000
    np.save(prepared.root / "test_index.npy", index)
    _load_refused(prepared.root, "test_index.npy", "entries point outside test_images.bin")


def test_a_tampered_dataset_via_the_cli_exits_2(prepared_dir: Path, tmp_path: Path) -> None:
    np.save(prepared_dir / "test_labels.npy", np.full(8, 7, np.int64))
    args = [
        "stage",
        "evaluate",
        "-c",
        TINY,
        "-d",
        str(prepared_dir),
        "-m",
        str(tmp_path / "m"),
        "-o",
        str(tmp_path / "e"),
    ]
    _one_line_cli_error(args, "test_labels.npy", "labels fall outside 0..1")
    assert not (tmp_path / "e" / "metrics.json").exists()
