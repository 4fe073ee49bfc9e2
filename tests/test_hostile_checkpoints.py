"""Tampered and foreign checkpoints (issue 17): a model file whose digest checks out but whose
content is foreign or tampered is refused by the schema check in one CheckpointError line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from cdarts.alphas_file import AlphasFile, load_alphas, save_alphas
from cdarts.checkpoint import check_state_dict
from cdarts.cli.main import app
from cdarts.config import load_config
from cdarts.data.prepared import PreparedDataset
from cdarts.errors import CheckpointError
from cdarts.model_file import MODEL_FILE, load_model, save_model
from cdarts.runners.retrain import retrain_spec
from cdarts.serving import load_classifier, serving_contract
from cdarts.spaces.darts.parser import reference_genotype
from cdarts.spaces.registry import build_retrain_network
from cdarts.storage import MANIFEST_NAME, LocalStore, download_directory, sha256_file, upload_directory
from tests.conftest import CONFIGS

TINY = str(CONFIGS / "tiny.yaml")
runner = CliRunner()


def _network(name: str = "DARTS_V2") -> torch.nn.Module:
    config = load_config(TINY)
    genotype = reference_genotype(name)
    torch.manual_seed(0)
    return build_retrain_network(genotype, retrain_spec(config, genotype, 3, 4))


@pytest.fixture
def model_dir(tmp_path: Path, tiny_dataset: Path) -> Path:
    """A genuine retrain output directory with a serving contract."""
    config = load_config(TINY)
    contract = serving_contract(PreparedDataset.load(tiny_dataset), config.data).to_dict()
    directory = tmp_path / "model"
    save_model(_network(), directory / MODEL_FILE, extra={"serving": contract, "dataset_digest": "x"})  # type: ignore[arg-type]
    return directory


def _tamper(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def _refused(path: Path, *fragments: str, loader: Callable[[Path], Any] = load_model) -> str:
    with pytest.raises(CheckpointError) as caught:
        loader(path)
    message = str(caught.value)
    assert "\n" not in message and str(path.parent) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def _weights(change: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda state: change(state["state_dict"])


def _first(kind: str) -> Callable[[dict[str, torch.Tensor]], str]:
    """The name of the first weight (float) or BatchNorm counter (int)."""
    return lambda weights: next(k for k, v in weights.items() if v.dtype.is_floating_point == (kind == "float"))


def _replace_first(kind: str, make: Callable[[torch.Tensor], Any]) -> Callable[[dict[str, Any]], None]:
    def change(weights: dict[str, torch.Tensor]) -> None:
        name = _first(kind)(weights)
        weights[name] = make(weights[name])

    return _weights(change)


def _other_architecture(state: dict[str, Any]) -> None:
    state["state_dict"] = {k: v.detach() for k, v in _network("DARTS_V1").state_dict().items()}


def _drop_one(weights: dict[str, torch.Tensor]) -> None:
    weights.pop(sorted(weights)[-1])


TAMPERING: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "no state_dict": (lambda s: s.pop("state_dict"), "'state_dict' must be a dictionary, found missing"),
    "state_dict a list": (
        lambda s: s.__setitem__("state_dict", [1, 2]),
        "'state_dict' must be a dictionary, found a list",
    ),
    "weights of another genotype": (_other_architecture, "the weights belong to another architecture"),
    "a weight missing": (_weights(_drop_one), "belong to another architecture: missing 1"),
    "an extra weight": (_weights(lambda w: w.__setitem__("backdoor.weight", torch.zeros(3))), "unexpected 1 (backdoor"),
    "wrong shape": (_replace_first("float", lambda t: torch.zeros(t.numel() + 1)), "the model needs"),
    "not a tensor": (_replace_first("float", lambda t: t.tolist()), "is list, not a dense tensor"),
    "sparse tensor": (_replace_first("float", lambda t: t.to_sparse()), "sparse_coo tensor, not a dense tensor"),
    "integer weights": (_replace_first("float", lambda t: t.long()), "is torch.int64, the model needs torch.float32"),
    "float counter": (_replace_first("int", lambda t: t.float()), "is torch.float32, the model needs torch.int64"),
    "NaN weight": (_replace_first("float", lambda t: torch.full_like(t, float("nan"))), "holds NaN or infinite values"),
    "genotype a string": (
        lambda s: s.__setitem__("genotype", "DARTS_V2"),
        "'genotype' must be a dictionary, found a str",
    ),
    "unknown operation": (
        lambda s: s["genotype"]["normal"][0].__setitem__(0, "rm_rf_conv"),
        "malformed genotype",
    ),
    "absurd cell count": (lambda s: s["spec"].__setitem__("cells", 10**9), "spec cells must be an integer in 0..1000"),
    "string channels": (
        lambda s: s["spec"].__setitem__("init_channels", "16"),
        "spec init_channels must be an integer",
    ),
    "unknown stem": (
        lambda s: s["spec"].__setitem__("stem", "mnist"),
        "spec stem 'mnist' is not one of cifar, imagenet",
    ),
    "spec key missing": (lambda s: s["spec"].pop("num_classes"), "malformed spec (missing ['num_classes']"),
    "no network": (lambda s: s["spec"].__setitem__("cells", 0), "build no network"),
    "extra a list": (lambda s: s.__setitem__("extra", [1]), "'extra' must be a dictionary"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampered_model_files_are_refused_by_the_schema_check(model_dir: Path, case: str) -> None:
    change, fragment = TAMPERING[case]
    _tamper(model_dir / MODEL_FILE, change)
    _refused(model_dir / MODEL_FILE, fragment)


def test_a_tampered_model_with_a_valid_digest_is_refused_after_download(model_dir: Path, tmp_path: Path) -> None:
    """The attacker recomputes the digest the way the storage layer does (sha256 of the file in
    the published manifest): the download verifies, and only the schema check refuses it."""
    store = LocalStore(tmp_path / "store")
    upload_directory(store, model_dir, "runs/1/model")
    published = tmp_path / "store" / "runs/1/model"
    _tamper(published / MODEL_FILE, _replace_first("float", lambda t: torch.zeros(2, 2)))
    manifest = json.loads((published / MANIFEST_NAME).read_text())
    entry = manifest["files"][MODEL_FILE]
    entry["sha256"], entry["size"] = sha256_file(published / MODEL_FILE), (published / MODEL_FILE).stat().st_size
    (published / MANIFEST_NAME).write_text(json.dumps(manifest))

    fetched = tmp_path / "fetched"
    assert download_directory(store, "runs/1/model", fetched) == 1  # the digest check passes
    _refused(fetched / MODEL_FILE, "has shape (2, 2), the model needs")
    _refused(fetched, "has shape (2, 2)")  # the directory form as the evaluate stage takes it


def test_a_genuine_model_file_still_loads_identically(model_dir: Path) -> None:
    model, extra = load_model(model_dir)
    reference = _network().state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    assert extra["dataset_digest"] == "x"


def test_a_tampered_model_via_the_cli_evaluate_exits_2(model_dir: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    _tamper(model_dir / MODEL_FILE, _other_architecture)
    out = tmp_path / "eval"
    args = ["stage", "evaluate", "-c", TINY, "-d", str(tiny_dataset), "-m", str(model_dir), "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cdarts: error: "), result.stderr
    assert "belong to another architecture" in lines[0] and "Traceback" not in result.output
    assert not (out / "metrics.json").exists()


CONTRACT_TAMPERING: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "classes a string": (lambda c: c.__setitem__("classes", "abcd"), "no list of class names"),
    "zero std": (lambda c: c.__setitem__("std", [0.0] * 3), "positive, finite stds"),
    "NaN mean": (lambda c: c.__setitem__("mean", [float("nan")] * 3), "finite means"),
    "mean of wrong length": (lambda c: c.__setitem__("mean", [0.5]), "mean/std of the wrong length"),
    "negative image size": (lambda c: c.__setitem__("image_size", -8), "impossible image size"),
    "unknown resize": (lambda c: c.__setitem__("resize", "stretch"), "unknown resize 'stretch'"),
    "missing key": (lambda c: c.pop("dataset_digest"), "serving contract is malformed"),
}


@pytest.mark.parametrize("case", list(CONTRACT_TAMPERING))
def test_a_malformed_serving_contract_is_refused_naming_the_file(model_dir: Path, case: str) -> None:
    change, fragment = CONTRACT_TAMPERING[case]
    _tamper(model_dir / MODEL_FILE, lambda state: change(state["extra"]["serving"]))
    _refused(model_dir, fragment, loader=load_classifier)


def test_check_state_dict_needs_no_memory_for_the_reference(tmp_path: Path) -> None:
    """The reference may be built on the meta device: shapes compared, nothing allocated."""
    with torch.device("meta"):
        skeleton = torch.nn.Linear(10_000, 10_000)
    with pytest.raises(CheckpointError, match=r"weight has shape \(3,\), the model needs \(10000, 10000\)"):
        check_state_dict(skeleton, {"weight": torch.zeros(3), "bias": torch.zeros(10_000)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a dictionary of named tensors"):
        check_state_dict(skeleton, {1: torch.zeros(1)}, tmp_path / "x.pt")


@pytest.mark.parametrize(
    ("state", "fragment"),
    [
        ({"space": "resnet", "candidates": ["a"], "layout": {}, "alphas": {}}, "unknown search space 'resnet'"),
        ({"space": "nasbench201", "candidates": [1, 2], "layout": {}, "alphas": {}}, "list of operation names"),
        (
            {
                "space": "nasbench201",
                "candidates": list("abcde"),
                "layout": {},
                "alphas": {"alphas": torch.zeros(6, 5).long()},
            },
            "torch.int64 torch.strided tensor, expected dense floats",
        ),
        ({"space": "chain", "candidates": ["a"], "layout": {"stage_layers": [0]}, "alphas": {}}, "gives no alpha rows"),
        ({"space": "darts", "candidates": ["a"], "layout": {"n_nodes": "x"}, "alphas": {}}, "is not an alphas file"),
    ],
)
def test_tampered_alphas_files_are_refused(tmp_path: Path, state: dict[str, Any], fragment: str) -> None:
    path = tmp_path / "alphas.pt"
    torch.save({"format": 2, **state}, path)
    _refused(path, fragment, loader=load_alphas)


def test_a_genuine_alphas_file_still_loads(tmp_path: Path) -> None:
    save_alphas(AlphasFile("nasbench201", tuple("abcde"), {"alphas": torch.randn(6, 5)}), tmp_path / "a.pt")
    assert load_alphas(tmp_path / "a.pt").alphas["alphas"].shape == (6, 5)
