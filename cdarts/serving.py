"""The served model: raw images in, class probabilities out (pure PyTorch, no MLflow).

The contract a serving team relies on:

* input: a batch of images N x H x W x C, either ``uint8`` pixel values as the prepared dataset
  stores them (0-255) or ``float32`` values in [0, 1]; any N >= 1;
* the dataset's evaluation preprocessing happens inside: images of an encoded (image-folder)
  dataset are resized and centre-cropped as the evaluate stage does; array datasets must come
  at their stored size; then the dataset's per-channel mean/std normalisation;
* output: N x K float32 class probabilities (softmax), columns in the order of ``classes``.

:class:`ServingContract` is that description as plain data; it travels in the model file and in
the MLflow model's metadata.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from cdarts.config import DataConfig
from cdarts.data.prepared import PreparedDataset, decode_image
from cdarts.data.transforms import build_transform
from cdarts.errors import CheckpointError, DataError
from cdarts.model_file import load_model
from cdarts.spaces.shared.retrain_model import RetrainModel

Resize = Literal["none", "resize_center_crop", "imagenet_center_crop"]
"""``none``: images must arrive at ``image_size``; ``resize_center_crop``: shorter side to
``image_size``, centre crop; ``imagenet_center_crop``: shorter side to 256/224 of it, centre crop."""


@dataclass(frozen=True)
class ServingContract:
    """What the served model takes and returns (see the module docstring)."""

    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int
    image_size: int
    resize: Resize
    dataset_digest: str

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "classes": list(self.classes),
            "mean": list(self.mean),
            "std": list(self.std),
            "input": f"N x H x W x {self.channels} uint8 (0-255) or float32 in [0, 1]",
            "output": f"N x {len(self.classes)} float32 class probabilities, columns in the order of classes",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServingContract:
        if not isinstance(data.get("classes"), list) or not all(isinstance(n, str) for n in data["classes"]):
            raise CheckpointError("the model's serving contract has no list of class names")
        try:
            contract = cls(
                classes=tuple(str(name) for name in data["classes"]),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                channels=int(data["channels"]),
                image_size=int(data["image_size"]),
                resize=data["resize"],
                dataset_digest=str(data["dataset_digest"]),
            )
        except (KeyError, TypeError, ValueError):
            raise CheckpointError("the model's serving contract is malformed") from None
        if len(contract.mean) != contract.channels or len(contract.std) != contract.channels:
            raise CheckpointError("the model's serving contract has mean/std of the wrong length")
        if not all(math.isfinite(v) for v in contract.mean) or not all(
            math.isfinite(v) and v > 0 for v in contract.std
        ):
            raise CheckpointError("the model's serving contract needs finite means and positive, finite stds")
        if contract.image_size < 1 or contract.channels not in (1, 3):
            raise CheckpointError("the model's serving contract has an impossible image size or channel count")
        if contract.resize not in ("none", "resize_center_crop", "imagenet_center_crop"):
            raise CheckpointError(f"the model's serving contract names an unknown resize {contract.resize!r}")
        return contract

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """The signature's shape: -1 marks a free dimension (the batch, and H x W when resized)."""
        side = self.image_size if self.resize == "none" else -1
        return (-1, side, side, self.channels)


def serving_contract(prepared: PreparedDataset, data: DataConfig) -> ServingContract:
    """The contract of a model trained on ``prepared`` with the evaluate stage's preprocessing:
    array datasets come at their stored size; encoded images are resized and centre-cropped
    (ImageNet recipe: shorter side to 256/224 of the crop first)."""
    resize: Resize = "none"
    if prepared.format == "encoded":
        resize = "imagenet_center_crop" if data.augmentation == "imagenet" else "resize_center_crop"
    return ServingContract(
        classes=tuple(prepared.classes),
        mean=tuple(prepared.mean),
        std=tuple(prepared.std),
        channels=prepared.channels,
        image_size=data.image_size,
        resize=resize,
        dataset_digest=prepared.digest,
    )


def example_images(prepared: PreparedDataset) -> npt.NDArray[np.uint8]:
    """Raw test images as served input, uint8 (N, H, W, C) (the model's input example in
    MLflow): the first two of an array dataset, the first decoded image of an image folder
    (whose images differ in size, so one makes a batch)."""
    if prepared.format != "encoded":
        return np.array(prepared.images("test")[:2], dtype=np.uint8)
    shard, index = prepared.encoded("test")
    offset, length = (int(v) for v in index[0])
    with shard.open("rb") as handle:
        handle.seek(offset)
        return np.asarray(decode_image(handle.read(length)), dtype=np.uint8)[None]


class ImageClassifier(nn.Module):
    """A retrained network behind the serving contract; always in eval mode."""

    def __init__(self, network: RetrainModel, contract: ServingContract) -> None:
        super().__init__()
        self.network = network.eval()
        self.contract = contract
        # The evaluate stage's own test transform, applied to the whole batch: served and
        # evaluated predictions agree because they share one preprocessing.
        self.transform = build_transform(
            "imagenet" if contract.resize == "imagenet_center_crop" else "none",
            train=False,
            image_size=contract.image_size,
            mean=contract.mean,
            std=contract.std,
            encoded=contract.resize != "none",
        )

    def train(self, mode: bool = True) -> ImageClassifier:
        super().train(False)  # BatchNorm and drop-path must never switch to training behaviour
        return self

    def _check(self, images: torch.Tensor) -> None:
        contract = self.contract
        if images.dim() != 4 or images.shape[0] == 0 or images.shape[-1] != contract.channels:
            raise DataError(
                f"expected a batch of images N x H x W x {contract.channels}, got shape {tuple(images.shape)}"
            )
        if images.dtype not in (torch.uint8, torch.float32):
            raise DataError(f"expected uint8 or float32 images, got {images.dtype}")
        if images.dtype == torch.float32:
            if not bool(torch.isfinite(images).all()):
                raise DataError("float32 images hold NaN or infinite values")
            low, high = float(images.min()), float(images.max())
            if low < 0.0 or high > 1.0:
                raise DataError(f"float32 images must lie in [0, 1] (got values in [{low:g}, {high:g}])")
        if contract.resize == "none" and tuple(images.shape[1:3]) != (contract.image_size, contract.image_size):
            raise DataError(
                f"expected {contract.image_size} x {contract.image_size} images, got "
                f"{images.shape[1]} x {images.shape[2]}"
            )

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W, C) uint8 or float32 -> the normalised (N, C, S, S) float32 the network takes
        (resizing runs on the input's dtype, before scaling, as in the evaluate stage)."""
        self._check(images)
        batch: torch.Tensor = self.transform(images.permute(0, 3, 1, 2).contiguous())
        return batch.as_subclass(torch.Tensor)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W, C) images -> (N, K) class probabilities."""
        logits: torch.Tensor = self.network(self.preprocess(images))[0]
        return torch.softmax(logits.float(), dim=1)

    def predict(self, images: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """NumPy in, NumPy out (what the MLflow model calls)."""
        if not isinstance(images, np.ndarray):
            raise DataError(f"expected a NumPy array of images, got {type(images).__name__}")
        writable = np.require(images, requirements=["C", "W"])  # copies read-only or strided input only
        probabilities: npt.NDArray[np.float32] = self(torch.from_numpy(writable)).numpy()
        return probabilities


def load_classifier(model_path: Path) -> ImageClassifier:
    """The served classifier of a model file written by retrain (its contract is stored in it)."""
    network, extra = load_model(model_path)
    if not isinstance(extra.get("serving"), dict):
        raise CheckpointError(f"{model_path} carries no serving contract (written before it was recorded)")
    try:
        contract = ServingContract.from_dict(extra["serving"])
    except CheckpointError as error:
        raise CheckpointError(f"{model_path}: {error}") from None
    spec = network.spec
    if len(contract.classes) != spec.num_classes or contract.channels != spec.in_channels:
        raise CheckpointError(f"{model_path}: the serving contract does not match the network's classes or channels")
    return ImageClassifier(network, contract)
