"""MNIST-layout IDX data (issue 16): small IDX sets written here, plain and gzip, in a directory,
a .tar.gz and on a real S3 server, read end to end through data prep; every malformed file is
refused in one DataError line naming it, and no (partial) prepared dataset is left behind."""

from __future__ import annotations

import gzip
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import yaml
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.config import DataConfig
from cdarts.data.idx import IMAGES_MAGIC, LABELS_MAGIC
from cdarts.data.mnist import FASHION_MNIST_CLASSES
from cdarts.errors import DataError
from cdarts.runners.data_prep import run_data_prep
from tests.conftest import CONFIGS

SIDE = 8  # stored pixels per side: small sets, fast tests
TRAIN, TEST = 40, 20
STEMS = {
    "train-images": "train-images-idx3-ubyte",
    "train-labels": "train-labels-idx1-ubyte",
    "t10k-images": "t10k-images-idx3-ubyte",
    "t10k-labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: npt.NDArray[np.uint8], magic: int | None = None) -> bytes:
    """An IDX file of a uint8 array: magic, one big-endian uint32 per dimension, the values."""
    magic = magic if magic is not None else 0x00000800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def make_arrays(classes: int = 10, seed: int = 0) -> dict[str, npt.NDArray[np.uint8]]:
    rng = np.random.default_rng(seed)
    return {
        "train-images": rng.integers(0, 256, (TRAIN, SIDE, SIDE), dtype=np.uint8),
        "train-labels": (np.arange(TRAIN) % classes).astype(np.uint8),
        "t10k-images": rng.integers(0, 256, (TEST, SIDE, SIDE), dtype=np.uint8),
        "t10k-labels": (np.arange(TEST) % classes).astype(np.uint8),
    }


def write_idx_set(
    root: Path, gz: bool = False, arrays: dict[str, npt.NDArray[np.uint8]] | None = None, prefix: str = ""
) -> Path:
    """The four IDX files of an MNIST-layout set in ``root`` (gzip-compressed with ``gz``)."""
    root.mkdir(parents=True, exist_ok=True)
    for role, array in (arrays or make_arrays()).items():
        data = idx_bytes(array)
        name = prefix + STEMS[role]
        if gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)
    return root


def tar_of(folder: Path, archive: Path, arcname: str = "fashion-mnist") -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return archive


def fashion(location: Path | str, image_size: int = SIDE) -> DataConfig:
    return DataConfig(source="fashion-mnist", location=str(location), image_size=image_size)


def refused(config: DataConfig, out: Path, *fragments: str) -> str:
    """Data prep refuses with one line holding every fragment; nothing is left beside ``out``."""
    before = set(out.parent.iterdir()) if out.parent.exists() else set()
    with pytest.raises(DataError) as caught:
        run_data_prep(config, 0, out)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert not out.exists()
    assert (set(out.parent.iterdir()) if out.parent.exists() else set()) == before
    return message


# -- valid sets ------------------------------------------------------------------------------------


def test_a_plain_directory_is_prepared_with_the_fashion_mnist_classes(tmp_path: Path) -> None:
    arrays = make_arrays()
    prepared = run_data_prep(fashion(write_idx_set(tmp_path / "src", arrays=arrays)), 0, tmp_path / "out")
    manifest = prepared.manifest
    assert manifest["classes"] == list(FASHION_MNIST_CLASSES)
    assert (manifest["channels"], manifest["image_size"], manifest["format"]) == (1, SIDE, "arrays")
    assert manifest["counts"]["train"] == TRAIN and manifest["counts"]["test"] == TEST
    assert np.array_equal(prepared.images("train")[..., 0], arrays["train-images"])
    assert np.array_equal(prepared.images("test")[..., 0], arrays["t10k-images"])
    assert prepared.labels("train").tolist() == arrays["train-labels"].tolist()
    assert prepared.labels("test").dtype == np.int64


@pytest.mark.parametrize("layout", ["gzip", "tar.gz", "tar.gz of gzip", "torchvision raw"])
def test_gzip_archives_and_nested_folders_give_the_same_dataset(tmp_path: Path, layout: str) -> None:
    plain = run_data_prep(fashion(write_idx_set(tmp_path / "plain")), 0, tmp_path / "plain-out")
    if layout == "gzip":
        location = write_idx_set(tmp_path / "src", gz=True)
    elif layout == "torchvision raw":  # both copies side by side, two folders down
        location = tmp_path / "src"
        write_idx_set(location / "FashionMNIST" / "raw", gz=True)
        write_idx_set(location / "FashionMNIST" / "raw")
    else:
        folder = write_idx_set(tmp_path / "src", gz=layout.endswith("gzip"))
        location = tar_of(folder, tmp_path / "fashion-mnist.tar.gz")
    assert run_data_prep(fashion(location), 0, tmp_path / "out").digest == plain.digest


def test_the_mnist_source_names_classes_by_number_and_takes_prefixed_sets(tmp_path: Path) -> None:
    digits = run_data_prep(
        DataConfig(source="mnist", location=str(write_idx_set(tmp_path / "a")), image_size=SIDE), 0, tmp_path / "o1"
    )
    assert digits.manifest["classes"] == [str(i) for i in range(10)]
    balanced = write_idx_set(tmp_path / "b", gz=True, arrays=make_arrays(classes=12), prefix="emnist-balanced-")
    wide = run_data_prep(DataConfig(source="mnist", location=str(balanced), image_size=SIDE), 0, tmp_path / "o2")
    assert wide.manifest["classes"] == [str(i) for i in range(12)]
    assert wide.num_classes == 12


def test_dotted_file_names_are_read_too(tmp_path: Path) -> None:
    """``train-images.idx3-ubyte``: how some mirrors name the files."""
    root = write_idx_set(tmp_path / "src")
    for path in list(root.iterdir()):
        path.rename(root / path.name.replace("s-idx", "s.idx"))
    plain = run_data_prep(fashion(write_idx_set(tmp_path / "plain")), 0, tmp_path / "plain-out")
    assert run_data_prep(fashion(root), 0, tmp_path / "out").digest == plain.digest


def test_images_are_resized_to_the_configured_size_and_stay_grey(tmp_path: Path) -> None:
    prepared = run_data_prep(fashion(write_idx_set(tmp_path / "src"), image_size=12), 0, tmp_path / "out")
    assert prepared.images("train").shape == (TRAIN, 12, 12, 1)
    assert prepared.manifest["channels"] == 1


def test_an_archive_and_a_prefix_on_s3_are_read_like_local_ones(s3_env: str, tmp_path: Path) -> None:
    from cdarts.storage import open_store

    folder = write_idx_set(tmp_path / "src", gz=True)
    archive = tar_of(folder, tmp_path / "fashion-mnist.tar.gz")
    store, _ = open_store("s3://data")
    store.upload_file(archive, "idx/fashion-mnist.tar.gz")
    for path in folder.iterdir():
        store.upload_file(path, f"idx/plain/{path.name}")
    local = run_data_prep(fashion(folder), 0, tmp_path / "local")
    for uri, out in (("s3://data/idx/fashion-mnist.tar.gz", "remote-tar"), ("s3://data/idx/plain/", "remote-dir")):
        remote = run_data_prep(fashion(uri), 0, tmp_path / out)
        assert remote.digest == local.digest
        assert remote.manifest["source"]["location"] == uri
    _gzipped(STEMS["t10k-images"], _flip_middle)(write_idx_set(tmp_path / "bad"))
    store.upload_file(tar_of(tmp_path / "bad", tmp_path / "bad.tar.gz"), "idx/bad.tar.gz")
    refused(fashion("s3://data/idx/bad.tar.gz"), tmp_path / "remote-bad", "t10k-images-idx3-ubyte.gz", "gzip")


def test_a_location_is_required() -> None:
    with pytest.raises(ValueError, match="needs a location"):
        DataConfig(source="fashion-mnist")


# -- malformed sets ----------------------------------------------------------------------------------


def _replace(stem: str, data: Callable[[bytes], bytes]) -> Callable[[Path], str]:
    def damage(root: Path) -> str:
        path = root / stem
        path.write_bytes(data(path.read_bytes()))
        return str(path)

    return damage


def _rewrite(role: str, array: npt.NDArray[np.uint8], magic: int | None = None) -> Callable[[Path], str]:
    return _replace(STEMS[role], lambda _: idx_bytes(array, magic))


def _gzipped(stem: str, change: Callable[[bytes], bytes]) -> Callable[[Path], str]:
    """Replace a plain file with a damaged .gz copy of it."""

    def damage(root: Path) -> str:
        plain = root / stem
        path = root / f"{stem}.gz"
        path.write_bytes(change(gzip.compress(plain.read_bytes())))
        plain.unlink()
        return str(path)

    return damage


def _flip_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


def _remove(role: str) -> Callable[[Path], str]:
    def damage(root: Path) -> str:
        (root / STEMS[role]).unlink()
        return STEMS[role]

    return damage


def _fifo(root: Path) -> str:
    path = root / STEMS["t10k-labels"]
    path.unlink()
    os.mkfifo(path)
    return str(path)


def _second_set(root: Path) -> str:
    write_idx_set(root / "other")
    return "several MNIST-layout sets"


_RNG = np.random.default_rng(1)
_LABELS = np.arange(TRAIN, dtype=np.uint8) % 10
MALFORMED: dict[str, tuple[Callable[[Path], str], str]] = {
    "labels magic on images": (
        _rewrite("train-images", _RNG.integers(0, 9, (TRAIN, 8, 8), np.uint8), LABELS_MAGIC),
        "magic number 0x00000801, expected 0x00000803",
    ),
    "images magic on labels": (
        _rewrite("t10k-labels", np.zeros(TEST, np.uint8), IMAGES_MAGIC),
        "magic number 0x00000803, expected 0x00000801",
    ),
    "signed-int magic": (_rewrite("train-labels", _LABELS, 0x00000C01), "magic number 0x00000c01"),
    "not square": (_rewrite("train-images", np.zeros((TRAIN, 8, 6), np.uint8)), "8x6 pixels; square"),
    "zero items": (_rewrite("train-labels", np.zeros(0, np.uint8)), "declares 0 items"),
    "absurd count": (
        _replace(STEMS["train-labels"], lambda d: (0x801).to_bytes(4, "big") + (2**32 - 1).to_bytes(4, "big")),
        "declares 4294967295 items",
    ),
    "absurd side": (
        _replace(
            STEMS["train-images"],
            lambda d: idx_bytes(np.zeros((1, 1, 1), np.uint8))[:8] + (10**6).to_bytes(4, "big") * 2,
        ),
        "images of 1000000x1000000 pixels",
    ),
    "short header": (_replace(STEMS["train-images"], lambda d: d[:10]), "header is truncated"),
    "too short to be IDX": (_replace(STEMS["train-images"], lambda d: d[:3]), "too short to be an IDX file"),
    "count mismatch": (_rewrite("train-labels", _LABELS[:-1]), "holds 40 images but"),
    "test count mismatch": (_rewrite("t10k-images", np.zeros((TEST + 1, 8, 8), np.uint8)), "holds 21 images but"),
    "label out of range": (
        _rewrite("train-labels", np.where(_LABELS == 3, 10, _LABELS).astype(np.uint8)),
        "label 10 is outside 0..9",
    ),
    "test sizes differ": (
        _rewrite("t10k-images", np.zeros((TEST, 9, 9), np.uint8)),
        "training images are 8 px but test images are 9 px",
    ),
    "longer than header": (_replace(STEMS["t10k-images"], lambda d: d + b"\0"), "bytes but its header declares 20x8x8"),
    "truncated plain": (_replace(STEMS["train-images"], lambda d: d[:-5]), "bytes but its header declares 40x8x8"),
    "truncated gzip": (_gzipped(STEMS["train-images"], lambda d: d[: len(d) // 2]), "corrupt or truncated gzip file"),
    "corrupt gzip": (_gzipped(STEMS["train-images"], _flip_middle), "corrupt or truncated gzip file"),
    "gzip of a longer file": (
        _gzipped(STEMS["train-labels"], lambda d: gzip.compress(gzip.decompress(d) + b"\1")),
        "longer than the 40 its header declares",
    ),
    "gzip of a truncated file": (
        _gzipped(STEMS["train-labels"], lambda d: gzip.compress(gzip.decompress(d)[:-1])),
        "39 of the 40 data bytes",
    ),
    "missing labels": (_remove("t10k-labels"), "lacks t10k-labels-idx1-ubyte[.gz]"),
    "a FIFO": (_fifo, "is not a regular file"),
    "two sets": (_second_set, "point data.location at one"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_idx_files_are_refused_in_one_line(tmp_path: Path, case: str) -> None:
    damage, fragment = MALFORMED[case]
    root = write_idx_set(tmp_path / "src")
    named = damage(root)
    refused(fashion(root), tmp_path / "out", named, fragment)


@pytest.mark.parametrize("case", ["label out of range", "corrupt gzip", "truncated plain"])
def test_malformed_files_inside_an_archive_are_refused_naming_the_member(tmp_path: Path, case: str) -> None:
    damage, fragment = MALFORMED[case]
    damage(write_idx_set(tmp_path / "src"))
    archive = tar_of(tmp_path / "src", tmp_path / "set.tar.gz", arcname="set")
    message = refused(fashion(archive), tmp_path / "out", fragment)
    assert f"{archive}:set/" in message


def test_a_test_label_beyond_the_training_classes_is_refused(tmp_path: Path) -> None:
    arrays = make_arrays()
    arrays["t10k-labels"] = np.full(TEST, 11, np.uint8)
    root = write_idx_set(tmp_path / "src", arrays=arrays)
    config = DataConfig(source="mnist", location=str(root), image_size=SIDE)
    refused(config, tmp_path / "out", STEMS["t10k-labels"], "label 11 is outside 0..9")


@pytest.mark.parametrize(
    "location, fragment",
    [
        ("empty", "holds no train-images-idx3-ubyte[.gz]"),
        ("garbage.tar.gz", "is not a readable tar archive"),
        ("missing", "does not exist"),
    ],
)
def test_locations_without_a_set_are_refused(tmp_path: Path, location: str, fragment: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.tar.gz").write_bytes(b"not an archive at all" * 10)
    refused(fashion(tmp_path / location), tmp_path / "out", fragment)


def test_a_corrupt_set_via_the_cli_exits_2_in_one_line(tmp_path: Path) -> None:
    root = write_idx_set(tmp_path / "src")
    _gzipped(STEMS["train-images"], lambda d: d[:-12])(root)
    config = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())
    config["data"] = {"source": "fashion-mnist", "location": str(root), "image_size": SIDE, "augmentation": "none"}
    config_file = tmp_path / "fashion.yaml"
    config_file.write_text(yaml.safe_dump(config))
    out = tmp_path / "prepared"
    result = CliRunner().invoke(app, ["stage", "data-prep", "-c", str(config_file), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cdarts: error: "), result.stderr
    assert "train-images-idx3-ubyte.gz" in lines[0] and "gzip" in lines[0]
    assert not out.exists()
