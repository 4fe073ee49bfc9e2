"""Every data source format, written by the tests themselves, and the refusal of bad inputs."""

from __future__ import annotations

import json
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cdarts.config import DataConfig
from cdarts.data.datasets import split_dataset
from cdarts.data.prepared import PreparedDataset
from cdarts.data.restricted_pickle import restricted_loads
from cdarts.errors import DataError
from cdarts.runners.data_prep import run_data_prep


def _cifar_batch(count: int, classes: int, seed: int, label_key: str = "labels") -> dict[str, object]:
    rng = np.random.default_rng(seed)
    return {
        "batch_label": "testing batch",
        label_key: [int(i % classes) for i in range(count)],
        "data": rng.integers(0, 256, size=(count, 3072), dtype=np.uint8),
        "filenames": [f"img_{i}.png" for i in range(count)],
    }


def write_cifar10(root: Path, per_batch: int = 20) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(_cifar_batch(per_batch, 10, i), protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps(_cifar_batch(per_batch, 10, 99), protocol=2))
    meta = {"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": per_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    (folder / "train").write_bytes(pickle.dumps(_cifar_batch(400, 100, 1, "fine_labels"), protocol=2))
    (folder / "test").write_bytes(pickle.dumps(_cifar_batch(100, 100, 2, "fine_labels"), protocol=2))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"f{i}" for i in range(100)]}, protocol=2))
    return folder


def write_image_folder(root: Path, classes: int = 3, per_class: int = 6, with_val: bool = True) -> Path:
    rng = np.random.default_rng(0)
    splits = {"train": per_class, "val": 2} if with_val else {"": per_class}
    for split, count in splits.items():
        for c in range(classes):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                size = (20 + 3 * i, 16 + 2 * c)  # sizes differ on purpose
                pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
                suffix = ".png" if i % 2 else ".jpg"
                Image.fromarray(pixels).save(folder / f"img_{i}{suffix}")
            (folder / "notes.txt").write_text("not an image, ignored")
    return root


def test_cifar10_directory_and_archive_prepare_identically(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "src")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    from_dir = run_data_prep(DataConfig(source="cifar10", location=str(tmp_path / "src")), 0, tmp_path / "a")
    from_tar = run_data_prep(DataConfig(source="cifar10", location=str(archive)), 0, tmp_path / "b")
    from_inner = run_data_prep(DataConfig(source="cifar10", location=str(folder)), 0, tmp_path / "c")
    assert from_dir.digest == from_tar.digest == from_inner.digest
    assert from_dir.manifest["counts"]["train"] == 100 and from_dir.manifest["counts"]["test"] == 20
    assert from_dir.classes == [f"c{i}" for i in range(10)] and from_dir.channels == 3
    # Pixel layout: row-major planes R, G, B in the file -> (H, W, C) here.
    raw = pickle.loads((folder / "data_batch_1").read_bytes())["data"][0]
    assert np.array_equal(from_dir.images("train")[0], raw.reshape(3, 32, 32).transpose(1, 2, 0))
    mean = from_dir.images("train").reshape(-1, 3).astype(np.float64).mean(0) / 255
    assert np.allclose(from_dir.mean, mean, atol=1e-6)


def test_cifar100_reads_fine_labels(tmp_path: Path) -> None:
    write_cifar100(tmp_path / "src")
    prepared = run_data_prep(DataConfig(source="cifar100", location=str(tmp_path / "src")), 0, tmp_path / "out")
    assert prepared.num_classes == 100 and prepared.manifest["counts"]["train"] == 400
    assert set(prepared.labels("train").tolist()) == set(range(100))


def test_hostile_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "src")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return os.system, (f"touch {marker}",)

    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": Exploit()}, protocol=2))
    with pytest.raises(DataError, match="data_batch_3 is corrupt"):
        run_data_prep(DataConfig(source="cifar10", location=str(folder)), 0, tmp_path / "out")
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        restricted_loads(pickle.dumps(Exploit()))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda f: (f / "data_batch_2").write_bytes((f / "data_batch_2").read_bytes()[:500]),
            "data_batch_2 is corrupt",
        ),
        (lambda f: (f / "test_batch").unlink(), "missing CIFAR file"),
        (
            lambda f: (f / "data_batch_1").write_bytes(
                pickle.dumps({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4})
            ),
            "shape (N, 3072)",
        ),
        (
            lambda f: (f / "data_batch_4").write_bytes(pickle.dumps({**_cifar_batch(20, 10, 4), "labels": [11] * 20})),
            "labels outside 0..9",
        ),
    ],
)
def test_damaged_cifar_is_refused_naming_the_file(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    folder = write_cifar10(tmp_path / "src")
    damage(folder)
    with pytest.raises(DataError, match=re.escape(message)):
        run_data_prep(DataConfig(source="cifar10", location=str(folder)), 0, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written left looking complete
    assert not list(tmp_path.glob(".out.partial-*"))


def test_truncated_archive_is_refused(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "src")
    archive = tmp_path / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    archive.write_bytes(archive.read_bytes()[:2000])
    with pytest.raises(DataError):
        run_data_prep(DataConfig(source="cifar10", location=str(archive)), 0, tmp_path / "out")


def test_image_folder_with_train_and_val(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs")
    config = DataConfig(source="imagefolder", location=str(root), image_size=16, augmentation="imagenet")
    prepared = run_data_prep(config, 0, tmp_path / "out")
    assert prepared.format == "encoded" and prepared.classes == ["class_0", "class_1", "class_2"]
    assert prepared.manifest["counts"]["train"] == 18 and prepared.manifest["counts"]["test"] == 6
    train = split_dataset(prepared, "train", config, train=True)
    test = split_dataset(prepared, "test", config, train=False)
    image, label = train[5]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == 0
    assert test[0][0].shape == (3, 16, 16)


def test_image_folder_of_class_folders_holds_out_a_test_share(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", classes=2, per_class=10, with_val=False)
    config = DataConfig(source="imagefolder", location=str(root), image_size=8, test_fraction=0.2)
    prepared = run_data_prep(config, 0, tmp_path / "out")
    assert prepared.manifest["counts"]["test"] == 4 and prepared.manifest["counts"]["train"] == 16
    assert set(prepared.labels("test").tolist()) == {0, 1}


def test_corrupt_image_is_refused_naming_the_file(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs")
    bad = root / "train" / "class_1" / "img_2.jpg"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(DataError, match=re.escape("img_2.jpg is corrupt or truncated")):
        run_data_prep(DataConfig(source="imagefolder", location=str(root)), 0, tmp_path / "out")


def test_wrong_class_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape("10 classes but data.num_classes is 7")):
        run_data_prep(DataConfig(source="digits", num_classes=7), 0, tmp_path / "out")


def test_digits_are_real_and_the_test_split_is_fixed(tmp_path: Path) -> None:
    a = run_data_prep(DataConfig(source="digits", image_size=16), seed=0, out_dir=tmp_path / "a")
    b = run_data_prep(DataConfig(source="digits", image_size=16), seed=5, out_dir=tmp_path / "b")
    assert a.manifest["counts"]["train"] + a.manifest["counts"]["test"] == 1797
    assert np.array_equal(a.labels("test"), b.labels("test"))  # independent of the experiment seed
    assert a.manifest["search_split"] != b.manifest["search_split"]  # the search split is seeded
    assert a.digest != b.digest
    assert a.images("train").shape[1:] == (16, 16, 1) and a.channels == 1


def test_search_split_is_stratified_and_recorded(tmp_path: Path) -> None:
    prepared = run_data_prep(DataConfig(source="digits", image_size=8), 0, tmp_path / "out")
    train_idx, val_idx = prepared.search_split()
    labels = torch.from_numpy(prepared.labels("train"))
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    assert len(train_idx) + len(val_idx) == len(labels)
    for cls in range(10):
        in_train, in_val = (labels[train_idx] == cls).sum(), (labels[val_idx] == cls).sum()
        assert abs(int(in_train) - int(in_val)) <= 1


def test_existing_unrelated_directory_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a prepared dataset"):
        run_data_prep(DataConfig(source="digits"), 0, out)
    assert (out / "precious.txt").read_text() == "keep me"


def test_prepared_dataset_reader_refuses_incomplete_directories(tmp_path: Path) -> None:
    prepared = run_data_prep(
        DataConfig(source="synthetic", image_size=8, num_train=16, num_test=4, num_classes=2), 0, tmp_path / "out"
    )
    (prepared.root / "test_images.npy").unlink()
    with pytest.raises(DataError, match=re.escape("test_images.npy is missing")):
        PreparedDataset.load(prepared.root)
    manifest = json.loads((prepared.root / "manifest.json").read_text())
    manifest["schema_version"] = 42
    (prepared.root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="schema_version"):
        PreparedDataset.load(prepared.root)


def test_cifar_augmentation_crops_flips_and_cuts_out(tmp_path: Path) -> None:
    from cdarts.data.transforms import build_transform

    torch.manual_seed(0)
    image = torch.full((3, 8, 8), 200, dtype=torch.uint8)
    train = build_transform("cifar", train=True, image_size=8, mean=[0.5] * 3, std=[0.25] * 3, crop_padding=2, cutout=4)
    evaluation = build_transform("cifar", train=False, image_size=8, mean=[0.5] * 3, std=[0.25] * 3)
    expected = (200 / 255 - 0.5) / 0.25
    assert torch.allclose(evaluation(image), torch.full((3, 8, 8), expected))
    outputs = [train(image) for _ in range(20)]
    assert all(o.shape == (3, 8, 8) for o in outputs)
    padded = (0 - 0.5) / 0.25
    assert any(torch.isclose(o, torch.tensor(padded)).any() for o in outputs)  # zero padding shows up
    assert all((o == 0).sum() >= 3 * 4 for o in outputs)  # at least a 2x2 cutout square per image


def test_pickle_of_plain_arrays_round_trips() -> None:
    data = {"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "labels": [1, 2]}
    loaded = restricted_loads(pickle.dumps(data, protocol=2))
    assert np.array_equal(loaded["data"], data["data"]) and loaded["labels"] == [1, 2]
