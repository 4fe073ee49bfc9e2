"""Tampered and foreign resume checkpoints (issue 17): a search or retrain checkpoint whose
digests match but whose content is tampered is refused in one CheckpointError line naming the
file, before any weight is restored; a genuine one still resumes (see the resume tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from cdarts.config import ExperimentConfig, load_config
from cdarts.errors import CheckpointError
from cdarts.runners import retrain as retrain_runner
from cdarts.runners import search as search_runner
from cdarts.runners.retrain import run_retrain
from cdarts.runners.search import run_search
from cdarts.spaces.darts.parser import reference_genotype
from tests.conftest import CONFIGS

GENOTYPE = reference_genotype("DARTS_V2")
Change = Callable[[dict[str, Any]], None]


def _first_float(weights: dict[str, torch.Tensor]) -> str:
    return next(name for name, value in weights.items() if value.dtype.is_floating_point)


def _set(key: str, value: Any) -> Change:
    return lambda state: state.__setitem__(key, value)


def _weight(make: Callable[[torch.Tensor], Any]) -> Change:
    def change(state: dict[str, Any]) -> None:
        name = _first_float(state["model"])
        state["model"][name] = make(state["model"][name])

    return change


def _momentum(optimizer_key: str, make: Callable[[torch.Tensor], Any]) -> Change:
    def change(state: dict[str, Any]) -> None:
        buffers = next(iter(state[optimizer_key]["state"].values()))
        buffers["momentum_buffer"] = make(buffers["momentum_buffer"])

    return change


def _rng(state: dict[str, Any]) -> None:
    state["rng"]["torch"] = torch.zeros(7, dtype=torch.uint8)


def _common(optimizer_key: str, counter: str) -> dict[str, tuple[Change, str]]:
    """Tampering both checkpoints share, with the fragment the refusal must contain."""
    return {
        "weights missing": (lambda s: s.pop("model"), "has no 'model' entry"),
        "weights a list": (_set("model", [1]), "entry 'model' is list"),
        "a weight of another shape": (_weight(lambda t: torch.zeros(t.numel() + 1)), "the model needs"),
        "a NaN weight": (_weight(lambda t: torch.full_like(t, float("nan"))), "NaN or infinite"),
        "an extra weight": (lambda s: s["model"].__setitem__("backdoor", torch.zeros(1)), "unexpected 1 (backdoor"),
        "momentum of another shape": (_momentum(optimizer_key, lambda t: torch.zeros(3, 3, 3)), "the parameter has"),
        "infinite momentum": (_momentum(optimizer_key, lambda t: torch.full_like(t, float("inf"))), "finite float"),
        "momentum for an unknown parameter": (
            lambda s: s[optimizer_key]["state"].__setitem__(10**6, {}),
            "unknown parameter 1000000",
        ),
        "optimizer of other parameters": (
            lambda s: s[optimizer_key]["param_groups"][0]["params"].pop(),
            "saved for other parameters",
        ),
        "optimizer a string": (_set(optimizer_key, "sgd"), f"entry '{optimizer_key}' is str"),
        "a negative counter": (_set(counter, -3), f"entry '{counter}' is -3"),
        "a counter past the end": (_set(counter, 10**9), "outside 0.."),
        "a counter that is a bool": (_set(counter, True), f"entry '{counter}' is a bool"),
        "a float counter": (_set(counter, 1.5), f"entry '{counter}' is float"),
        "a malformed RNG state": (_rng, "the RNG state is malformed"),
        "no RNG state": (lambda s: s.pop("rng"), "has no 'rng' entry"),
    }


def _grad(state: dict[str, Any]) -> None:
    name = next(iter(state["grads"]))
    state["grads"][name] = torch.zeros(2, 2, 2, 2, 2)


SEARCH_ONLY: dict[str, tuple[Change, str]] = {
    "a stale gradient of another shape": (_grad, "stale gradients"),
    "a stale gradient for no parameter": (
        lambda s: s["grads"].__setitem__("not_a_parameter", torch.zeros(1)),
        "unexpected 1 (not_a_parameter",
    ),
    "cycles a dict": (_set("cycles", {}), "entry 'cycles' is dict"),
}
RETRAIN_ONLY: dict[str, tuple[Change, str]] = {
    "history shorter than the epochs": (_set("history", []), "does not match next_epoch"),
}


def _tiny() -> ExperimentConfig:
    return load_config(str(CONFIGS / "tiny.yaml"))


def _tamper(path: Path, change: Change) -> None:
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def _refused(run: Callable[[], Any], path: Path, fragment: str) -> None:
    with pytest.raises(CheckpointError) as caught:
        run()
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and fragment in message, message


@pytest.fixture(scope="module")
def search_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> bytes:
    """A genuine search checkpoint after one of several iterations: some stale grads, momentum."""
    out = tmp_path_factory.mktemp("search")
    run_search(_search_config(_tiny()), tiny_dataset, out, max_iterations=2)
    return (out / search_runner.CHECKPOINT_NAME).read_bytes()


def _search_config(tiny_config: ExperimentConfig) -> ExperimentConfig:
    return tiny_config.model_copy(update={"search": tiny_config.search.model_copy(update={"search_iterations": 3})})


@pytest.mark.parametrize("case", list({**_common("warmup_optimizer", "next_iteration"), **SEARCH_ONLY}))
def test_a_tampered_search_checkpoint_is_refused_before_resuming(
    case: str, search_checkpoint: bytes, tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path
) -> None:
    change, fragment = {**_common("warmup_optimizer", "next_iteration"), **SEARCH_ONLY}[case]
    path = tmp_path / search_runner.CHECKPOINT_NAME
    path.parent.mkdir(parents=True)
    path.write_bytes(search_checkpoint)
    _tamper(path, change)
    _refused(lambda: run_search(_search_config(tiny_config), tiny_dataset, tmp_path), path, fragment)
    assert not (tmp_path / "genotype.json").exists()


@pytest.fixture(scope="module")
def retrain_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> bytes:
    out = tmp_path_factory.mktemp("retrain")
    run_retrain(_retrain_config(_tiny()), tiny_dataset, GENOTYPE, out, max_epochs=1)
    return (out / retrain_runner.CHECKPOINT_NAME).read_bytes()


def _retrain_config(tiny_config: ExperimentConfig) -> ExperimentConfig:
    return tiny_config.model_copy(update={"retrain": tiny_config.retrain.model_copy(update={"epochs": 2})})


@pytest.mark.parametrize("case", list({**_common("optimizer", "next_epoch"), **RETRAIN_ONLY}))
def test_a_tampered_retrain_checkpoint_is_refused_before_resuming(
    case: str, retrain_checkpoint: bytes, tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path
) -> None:
    change, fragment = {**_common("optimizer", "next_epoch"), **RETRAIN_ONLY}[case]
    path = tmp_path / retrain_runner.CHECKPOINT_NAME
    path.parent.mkdir(parents=True)
    path.write_bytes(retrain_checkpoint)
    _tamper(path, change)
    _refused(lambda: run_retrain(_retrain_config(tiny_config), tiny_dataset, GENOTYPE, tmp_path), path, fragment)
    assert not (tmp_path / "model.pt").exists()
