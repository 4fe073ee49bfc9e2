"""Side by side with the authors' code, in one process: the CDARTS search joint step and the
retrain step at the official CIFAR sizes, ours against the authors' own classes and step
functions (microsoft/Cream, folder CDARTS/, unchanged), alternating step by step so that drift
hits both alike.

Get their code with ``git clone https://github.com/microsoft/Cream`` (nothing of it is copied
here) and pass the checkout with ``--cream-dir``. What their code needs to run on a current
CPU-only torch is patched here, in memory, never in their files:

* their step functions build ``torch.device("cuda")`` and call ``torch.cuda.synchronize()``:
  they see a torch whose ``device`` is the benchmark's and whose ``synchronize`` is a no-op;
* ``utils.accuracy`` calls ``.view`` on a non-contiguous slice (an error on torch >= 1.x): a
  top-k accuracy written here replaces it;
* the non-distributed branch of ``search()`` reads a name it never bound: their step runs in its
  distributed branch, with a one-process ``reduce_tensor`` (a copy, as an all-reduce over one
  rank is);
* drop-path makes its mask with ``torch.cuda.FloatTensor``: their ops module's torch makes it on
  the benchmark's device;
* ``mixup_data(..., use_cuda=True)`` and ``add_alpha_regularization`` call ``Tensor.cuda()``:
  on a machine without CUDA, ``Tensor.cuda`` moves to the benchmark's device instead;
* ``search()`` and ``train()`` expect a DistributedDataParallel module (``model.module``): a
  one-line wrapper gives them one.

Both sides run the CIFAR 1-GPU search flags (init_channels 16, 8 search cells, E of 20 cells with
the CDARTS CIFAR cell, Smooth-L1 distillation, the alpha regulariser, fixed heads, learnable
ensemble) on the same batches; the retrain is C = 36, 20 cells, auxiliary head, drop-path 0.2.
Work is counted once, on our networks (the same architecture): 3 x the forward FLOPs of convs
and linears. Peak memory comes from fresh processes.

    python bench/vs_authors.py --cream-dir ../Cream --batch-size 32 64 --steps 3 --memory --json OUT.json

``--ablate-phase-split`` adds our fast search with plain dilated convolutions (what the polyphase
ones in cdarts/spaces/shared/phase_split_conv.py buy).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import machine, matmul_flops_per_second, peak_memory_mb, reset_peak_memory, timed
from retrain_step import build_trainer
from search_step import EVAL_GENOTYPE, build_setup, step_flops

from cdarts.devices import resolve_device
from cdarts.spaces.shared.phase_split_conv import PhaseSplitConv2d

REPO_ROOT = Path(__file__).resolve().parents[1]
SEARCH_CONFIG = str(REPO_ROOT / "configs" / "cifar10.yaml")
RETRAIN_DROP_PATH = 0.2
# The authors' CIFAR 1-GPU search flags (../shared/reference/cdarts-algorithm.md section 3.5).
AUTHORS_SEARCH_FLAGS = [
    "--name", "vs-authors", "--dataset", "cifar10", "--model_type", "cifar", "--init_channels", "16",
    "--stem_multiplier", "3", "--sample_ratio", "1.0", "--w_lr", "0.08", "--nasnet_lr", "0.08",
    "--alpha_lr", "3e-4", "--alpha_weight_decay", "0", "--w_weight_decay", "3e-4", "--regular",
    "--regular_ratio", "0.667", "--regular_coeff", "5", "--loss_alpha", "1", "--loss_T", "2",
    "--interactive_type", "3", "--fix_head", "--ensemble_param", "--one_stage", "--repeat_cell",
    "--clean_arch", "--pretrain_epochs", "2", "--search_iter", "32", "--search_iter_epochs", "1",
    "--nasnet_warmup", "1", "--print_freq", "1000000", "--distributed",
]  # fmt: skip
AUTHORS_RETRAIN_FLAGS = [
    "--name", "vs-authors", "--dataset", "cifar10", "--model_type", "cifar", "--init_channels", "36",
    "--layers", "20", "--aux_weight", "0.4", "--label_smooth", "0", "--print_freq", "1000000", "--distributed",
]  # fmt: skip

Batch = tuple[torch.Tensor, torch.Tensor]


# -- the authors' code, loaded with the harness's workarounds -------------------------------------


def _device_torch(device: torch.device) -> types.ModuleType:
    """torch as their step functions and ops should see it: ``device(...)`` is ours, synchronize a
    no-op, ``cuda.FloatTensor`` made on our device."""

    class DeviceTorch(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            return getattr(torch, name)

    proxy = DeviceTorch("torch")
    proxy.device = lambda *args, **kwargs: device  # type: ignore[attr-defined]
    proxy.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        synchronize=lambda *args: None,
        FloatTensor=lambda *size: torch.empty(*size, device=device),
    )
    return proxy


def _top_k_accuracy(output: torch.Tensor, target: torch.Tensor, topk: tuple[int, ...] = (1,)) -> list[torch.Tensor]:
    """Fraction of rows whose target is among the k largest logits, per k."""
    best = output.topk(max(topk), dim=1).indices
    hits = best.eq(target.unsqueeze(1))
    return [hits[:, :k].any(dim=1).float().mean() for k in topk]


def load_authors(cream_dir: Path, device: torch.device) -> types.SimpleNamespace:
    """Their modules (CDARTS/lib), with the workarounds above applied to the loaded modules."""
    root = cream_dir / "CDARTS"
    if not (root / "lib" / "models" / "cdarts_controller.py").is_file():
        raise SystemExit(f"vs_authors: {cream_dir} is no microsoft/Cream checkout (CDARTS/lib missing)")
    sys.path.insert(0, str(root))
    import lib.config as config  # type: ignore[import-not-found]
    import lib.core.augment_function as augment_function  # type: ignore[import-not-found]
    import lib.core.search_function as search_function  # type: ignore[import-not-found]
    import lib.models.ops as ops  # type: ignore[import-not-found]
    import lib.utils.genotypes as genotypes  # type: ignore[import-not-found]
    import lib.utils.utils as utils  # type: ignore[import-not-found]
    from lib.models.cdarts_controller import CDARTSController  # type: ignore[import-not-found]

    search_function.torch = augment_function.torch = ops.torch = _device_torch(device)
    utils.accuracy = _top_k_accuracy
    utils.reduce_tensor = lambda tensor, world_size: tensor.clone()
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *args, **kwargs: self.to(device)  # type: ignore[method-assign]
    cell = json.loads((root / "CDARTS" / "cells" / "cifar_genotype.json").read_text())["0"]
    return types.SimpleNamespace(
        config=config,
        search=search_function.search,
        train=augment_function.train,
        controller=CDARTSController,
        cifar_cell=genotypes.from_str(cell),
        primitives=list(genotypes.PRIMITIVES),
    )


class _AsDistributed(nn.Module):
    """What their step functions expect of a DDP module: ``module`` and a delegating forward."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


def _parsed(config_class: type, flags: list[str]) -> Any:
    saved = sys.argv
    sys.argv = ["vs_authors", *flags]
    try:
        return config_class()
    finally:
        sys.argv = saved


class _Quiet:
    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("vs_authors.authors")
    logger.disabled = True
    return logger


def authors_search_step(
    authors: types.SimpleNamespace, val: Batch, train: Batch, device: torch.device
) -> Callable[[], None]:
    """One of their joint steps (their ``search()`` over one val and one train batch), set up as
    their search.py sets up a cycle: E built from the CDARTS CIFAR cell, pool weights copied in,
    their three optimisers."""
    config = _parsed(authors.config.SearchConfig, [*AUTHORS_SEARCH_FLAGS, "--batch_size", str(val[0].shape[0])])
    torch.manual_seed(0)
    controller = authors.controller(config, nn.CrossEntropyLoss(), n_nodes=4, stem_multiplier=config.stem_multiplier)
    cell = authors.cifar_cell
    # What their search.py records per stage before building E: the genotype and, per node, the
    # (input, op index) pairs it keeps (their "connects"), from which E inherits the pool's weights.
    connects = {
        name: [[(source, authors.primitives.index(op)) for op, source in node] for node in getattr(cell, name)]
        for name in ("normal", "reduce")
    }
    for layer in range(config.layer_num):
        controller.genotypes[layer], controller.connects[layer] = cell, connects
        controller.build_nas_layers(layer, cell, config.same_structure)
    controller = controller.to(device)
    controller.fix_pre_layers(0)
    for layer in range(config.layer_num):
        controller.copy_params_from_super_layer(layer)
    model = _AsDistributed(controller)
    sgd = {"momentum": config.w_momentum, "weight_decay": config.w_weight_decay}
    heads = (controller.distill_aux_head1, controller.distill_aux_head2)
    # Their search.py's three optimisers for a cycle with ensemble_param and repeat_cell: S's
    # weights, the alphas, E's weights (the same parameters and settings; empty groups left out).
    s_modules = (controller.feature_extractor, controller.super_layers, controller.fc_super, *heads)
    w_optim = torch.optim.SGD(
        [{"params": m.parameters()} for m in s_modules] + [{"params": controller.ensemble_param}], lr=config.w_lr, **sgd
    )
    alpha_optim = torch.optim.Adam(
        controller.super_layers_arch[0].parameters(),
        config.alpha_lr,
        betas=(0.5, 0.999),
        weight_decay=config.alpha_weight_decay,
    )
    e_modules = (controller.feature_extractor, controller.nas_layers, *heads, controller.fc_nas)
    optimizer = torch.optim.SGD(
        [{"params": m.parameters()} for m in e_modules] + [{"params": controller.ensemble_param}],
        lr=config.nasnet_lr,
        **sgd,
    )
    writer, logger = _Quiet(), _quiet_logger()

    def step() -> None:
        authors.search(
            [train], [val], model, optimizer, w_optim, alpha_optim, 0, config.pretrain_epochs, writer, logger, config
        )

    return step


def authors_retrain_step(authors: types.SimpleNamespace, batch: Batch) -> Callable[[], None]:
    """One of their retrain steps (their ``train()`` over one batch) on the CDARTS CIFAR cell."""
    config = _parsed(authors.config.AugmentConfig, [*AUTHORS_RETRAIN_FLAGS, "--batch_size", str(batch[0].shape[0])])
    torch.manual_seed(0)
    controller = authors.controller(config, nn.CrossEntropyLoss(), n_nodes=4, stem_multiplier=config.stem_multiplier)
    controller.build_augment_model(controller.init_channel, dict.fromkeys(range(3), authors.cifar_cell))
    network = controller.model_main.to(batch[0].device)
    network.drop_path_prob(RETRAIN_DROP_PATH)
    model = _AsDistributed(network)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    writer, logger = _Quiet(), _quiet_logger()
    return lambda: authors.train([batch], model, optimizer, 0, writer, logger, config)


# -- ours -------------------------------------------------------------------------------------------


def _batches(batch_size: int, device: torch.device, count: int, image_size: int = 32) -> list[Batch]:
    generator = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(device),
            torch.randint(0, 10, (batch_size,), generator=generator).to(device),
        )
        for _ in range(count)
    ]


def _alternate(steps: dict[str, Callable[[], None]], rounds: int, warmup: int, device: torch.device) -> dict[str, Any]:
    for step in steps.values():
        for _ in range(warmup):
            step()
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            times[name].append(timed(steps[name], device))
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "all_s": t} for name, t in times.items()}


def _without_phase_split(module: nn.Module) -> None:
    """Back to plain dilated convolutions: the ablation of the polyphase ones."""
    for child in module.modules():
        if type(child) is PhaseSplitConv2d:
            child.__class__ = nn.Conv2d


def compare_search(
    authors: types.SimpleNamespace,
    batch_size: int,
    rounds: int,
    warmup: int,
    device: torch.device,
    ablate_phase_split: bool = False,
) -> dict[str, Any]:
    impls = {"fast": "fast", "reference": "reference", **({"fast_unsplit": "fast"} if ablate_phase_split else {})}
    ours = {
        name: build_setup(SEARCH_CONFIG, impl, batch_size, device, eval_genotype=EVAL_GENOTYPE)
        for name, impl in impls.items()
    }
    if ablate_phase_split:
        _without_phase_split(ours["fast_unsplit"].model)  # E is built already; no cycle runs here
    val, train = _batches(batch_size, device, 2)
    for setup in ours.values():  # the same two batches on every side
        setup.val, setup.train = val, train
    steps = {
        "authors": authors_search_step(authors, val, train, device),
        **{f"ours_{k}": s.step for k, s in ours.items()},
    }
    row = {"batch_size": batch_size, "flops_per_step": step_flops(ours["fast"])}
    row.update(_alternate(steps, rounds, warmup, device))
    return row


def compare_retrain(
    authors: types.SimpleNamespace, batch_size: int, rounds: int, warmup: int, device: torch.device
) -> dict[str, Any]:
    ours = build_trainer(EVAL_GENOTYPE, "fast", batch_size, device, drop_path_prob=RETRAIN_DROP_PATH)
    batch = _batches(batch_size, device, 1)[0]
    ours.images = batch[0].contiguous(memory_format=torch.channels_last)
    ours.labels = batch[1]
    steps = {"authors": authors_retrain_step(authors, batch), "ours_fast": ours.step}
    row: dict[str, Any] = {"batch_size": batch_size}
    row.update(_alternate(steps, rounds, warmup, device))
    return row


def probe_memory(cream_dir: Path, which: str, batch_size: int, device: torch.device) -> float:
    """Peak memory (MiB) of one step of ``which`` after one warm-up step, in this process."""
    val, train = _batches(batch_size, device, 2)
    if which == "authors_search":
        step = authors_search_step(load_authors(cream_dir, device), val, train, device)
    elif which == "authors_retrain":
        step = authors_retrain_step(load_authors(cream_dir, device), val)
    elif which == "ours_retrain":
        step = build_trainer(EVAL_GENOTYPE, "fast", batch_size, device, drop_path_prob=RETRAIN_DROP_PATH).step
    else:
        setup = build_setup(SEARCH_CONFIG, which.removeprefix("ours_"), batch_size, device)
        setup.val, setup.train = val, train
        step = setup.step
    step()
    reset_peak_memory(device)
    step()
    return peak_memory_mb(device)


def memory_in_fresh_process(cream_dir: Path, which: str, batch_size: int, device: torch.device) -> float:
    command = [sys.executable, __file__, "--cream-dir", str(cream_dir), "--device", str(device)]
    completed = subprocess.run([*command, "--probe-memory", which, str(batch_size)], capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"vs_authors: memory probe {which} failed: {completed.stderr.strip().splitlines()[-1:]}")
    return float(json.loads(completed.stdout.strip().splitlines()[-1])["peak_memory_mb"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cream-dir", type=Path, required=True, help="a checkout of github.com/microsoft/Cream")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32, 64], help="search batch sizes")
    parser.add_argument("--retrain-batch-size", type=int, nargs="*", default=[32], help="retrain batch sizes")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side (alternating)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per side first")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--memory", action="store_true", help="peak memory of each side, each in a fresh process")
    parser.add_argument(
        "--ablate-phase-split", action="store_true", help="also time the fast search with plain dilated convolutions"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--probe-memory", nargs=2, metavar=("WHICH", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.probe_memory:
        which, batch = args.probe_memory
        print(json.dumps({"peak_memory_mb": probe_memory(args.cream_dir, which, int(batch), device)}))
        return

    memory: list[dict[str, Any]] = []
    if args.memory:  # first, while this process is small
        plan = [(w, b) for b in args.batch_size for w in ("authors_search", "ours_fast", "ours_reference")]
        plan += [(w, b) for b in args.retrain_batch_size for w in ("authors_retrain", "ours_retrain")]
        for which, batch in plan:
            peak = memory_in_fresh_process(args.cream_dir, which, batch, device)
            memory.append({"which": which, "batch_size": batch, "peak_memory_mb": peak})
            print(f"memory: {which} batch {batch}: {peak:.0f} MiB", flush=True)
    authors = load_authors(args.cream_dir, device)
    matmul = matmul_flops_per_second(device)
    search_rows = []
    for batch in args.batch_size:
        row = compare_search(authors, batch, args.steps, args.warmup, device, args.ablate_phase_split)
        for side in [name for name in row if name == "authors" or name.startswith("ours_")]:
            row[side]["fraction_of_matmul"] = row["flops_per_step"] / row[side]["median_s"] / matmul
        row["speedup_fast"] = row["authors"]["median_s"] / row["ours_fast"]["median_s"]
        row["speedup_reference"] = row["authors"]["median_s"] / row["ours_reference"]["median_s"]
        print(
            f"search batch {batch}: authors {row['authors']['median_s']:.2f} s, "
            f"ours fast {row['ours_fast']['median_s']:.2f} s "
            f"({row['speedup_fast']:.2f}x), ours reference {row['ours_reference']['median_s']:.2f} s "
            f"({row['speedup_reference']:.2f}x); matmul share authors {row['authors']['fraction_of_matmul']:.1%}, "
            f"fast {row['ours_fast']['fraction_of_matmul']:.1%}"
            + (
                f"; fast without phase split {row['ours_fast_unsplit']['median_s']:.2f} s"
                if args.ablate_phase_split
                else ""
            ),
            flush=True,
        )
        search_rows.append(row)
    retrain_rows = []
    for batch in args.retrain_batch_size:
        row = compare_retrain(authors, batch, args.steps, args.warmup, device)
        row["speedup"] = row["authors"]["median_s"] / row["ours_fast"]["median_s"]
        print(
            f"retrain batch {batch}: authors {row['authors']['median_s']:.2f} s, "
            f"ours {row['ours_fast']['median_s']:.2f} s "
            f"({row['speedup']:.2f}x)",
            flush=True,
        )
        retrain_rows.append(row)
    report = {
        "benchmark": "vs_authors",
        **machine(device),
        "matmul_flops_per_s": matmul,
        "search": search_rows,
        "retrain": retrain_rows,
        "memory": memory,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
