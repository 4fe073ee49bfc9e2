"""The served classifier: raw images in, the evaluate stage's predictions out, bad input refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cdarts.config import DataConfig, ExperimentConfig, load_config
from cdarts.data.datasets import split_dataset
from cdarts.data.prepared import PreparedDataset, decode_image
from cdarts.errors import CdartsError, CheckpointError, DataError
from cdarts.model_file import save_model
from cdarts.runners.data_prep import run_data_prep
from cdarts.runners.retrain import retrain_spec
from cdarts.serving import ImageClassifier, load_classifier, serving_contract
from cdarts.spaces.darts.parser import reference_genotype
from cdarts.spaces.registry import build_retrain_network
from tests.conftest import CONFIGS
from tests.test_data_prep import write_image_folder


def _model_file(config: ExperimentConfig, prepared: PreparedDataset, path: Path, with_contract: bool = True) -> Path:
    torch.manual_seed(0)
    genotype = reference_genotype("DARTS_V2")
    network = build_retrain_network(genotype, retrain_spec(config, genotype, prepared.channels, prepared.num_classes))
    extra = {"serving": serving_contract(prepared, config.data).to_dict()} if with_contract else {}
    save_model(network, path, extra=extra)
    return path


def _evaluate_path(config: ExperimentConfig, prepared: PreparedDataset, model: ImageClassifier) -> torch.Tensor:
    """Probabilities as the evaluate stage computes them: its test transform, then the network."""
    test_set = split_dataset(prepared, "test", config.data, train=False)
    batch = torch.stack([test_set[i][0] for i in range(len(test_set))])
    with torch.inference_mode():
        return torch.softmax(model.network(batch)[0], dim=1)


def test_raw_array_images_give_the_evaluate_stage_predictions(tiny_dataset: Path, tmp_path: Path) -> None:
    config = load_config(str(CONFIGS / "tiny.yaml"))
    prepared = PreparedDataset.load(tiny_dataset)
    classifier = load_classifier(_model_file(config, prepared, tmp_path / "model.pt"))
    raw = np.array(prepared.images("test"))
    served = classifier.predict(raw)
    expected = _evaluate_path(config, prepared, classifier).numpy()
    assert served.shape == (len(raw), prepared.num_classes) and served.dtype == np.float32
    np.testing.assert_allclose(served, expected, atol=1e-5)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-5)
    # float32 in [0, 1] is the same picture; any batch size gives the same rows
    np.testing.assert_allclose(classifier.predict(raw.astype(np.float32) / 255), served, atol=1e-5)
    np.testing.assert_allclose(classifier.predict(raw[:3]), served[:3], atol=1e-5)
    classifier.train()  # a serving model never switches BatchNorm to batch statistics
    np.testing.assert_allclose(classifier.predict(raw[:1]), served[:1], atol=1e-5)


def test_raw_image_folder_images_are_resized_as_evaluate_does(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs")
    base = load_config(str(CONFIGS / "tiny.yaml"))
    for augmentation in ("imagenet", "none"):
        data = DataConfig(source="imagefolder", location=str(root), image_size=8, augmentation=augmentation)
        config = base.model_copy(update={"data": data})
        prepared = run_data_prep(data, 0, tmp_path / f"prepared-{augmentation}")
        classifier = load_classifier(_model_file(config, prepared, tmp_path / f"model-{augmentation}.pt"))
        assert classifier.contract.input_shape == (-1, -1, -1, 3)
        shard, index = prepared.encoded("test")
        data_bytes = shard.read_bytes()
        raw = [np.asarray(decode_image(data_bytes[o : o + n])) for o, n in index]  # at their own sizes
        served = np.concatenate([classifier.predict(image[None]) for image in raw])
        np.testing.assert_allclose(served, _evaluate_path(config, prepared, classifier).numpy(), atol=1e-5)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 8, 8, 1), np.uint8), "N x H x W x 3"),
        (np.zeros((8, 8, 3), np.uint8), "N x H x W x 3"),
        (np.zeros((0, 8, 8, 3), np.uint8), "N x H x W x 3"),
        (np.zeros((2, 9, 8, 3), np.uint8), "expected 8 x 8 images"),
        (np.zeros((2, 8, 8, 3), np.int64), "uint8 or float32"),
        (np.full((2, 8, 8, 3), 200.0, np.float32), "must lie in [0, 1]"),
        (np.full((2, 8, 8, 3), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(
    tiny_dataset: Path, tmp_path: Path, images: np.ndarray, message: str
) -> None:
    config = load_config(str(CONFIGS / "tiny.yaml"))
    classifier = load_classifier(_model_file(config, PreparedDataset.load(tiny_dataset), tmp_path / "model.pt"))
    with pytest.raises(DataError, match=message.replace("[", r"\[")):
        classifier.predict(images)


def test_a_model_file_without_a_contract_is_not_served(tiny_dataset: Path, tmp_path: Path) -> None:
    config = load_config(str(CONFIGS / "tiny.yaml"))
    path = _model_file(config, PreparedDataset.load(tiny_dataset), tmp_path / "model.pt", with_contract=False)
    with pytest.raises(CheckpointError, match="no serving contract"):
        load_classifier(path)
    with pytest.raises(CdartsError):
        load_classifier(tmp_path / "missing.pt")
