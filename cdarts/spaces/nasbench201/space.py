"""The NAS-Bench-201 cell space: one cell (four nodes, six edges, five ops) shared by the
benchmark's ResNet-like skeleton (../shared/reference/cdarts-algorithm.md section 7)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cdarts.errors import ConfigError
from cdarts.spaces.base import SearchSpace
from cdarts.spaces.nasbench201.architecture import NB201_EDGES, Nb201Genotype
from cdarts.spaces.nasbench201.candidates import NB201_OPS
from cdarts.spaces.nasbench201.diagram import nb201_cell_svg, write_nb201_cell_diagram
from cdarts.spaces.nasbench201.joint_network import Nb201JointNetwork
from cdarts.spaces.nasbench201.lookup import JsonBenchmarkLookup
from cdarts.spaces.nasbench201.retrain_network import Nb201RetrainNetwork
from cdarts.spaces.shared.retrain_model import RetrainModel
from cdarts.spaces.shared.retrain_spec import RetrainSpec

if TYPE_CHECKING:
    from cdarts.architecture import Architecture
    from cdarts.config import ExperimentConfig


class NasBench201Space(SearchSpace):
    name = "nasbench201"
    architecture_type = Nb201Genotype

    def architecture_from_dict(self, data: dict[str, Any]) -> Nb201Genotype:
        return Nb201Genotype.from_dict(data)

    def parse(self, text: str) -> Nb201Genotype | None:
        return Nb201Genotype.from_arch_string(text) if text.startswith("|") else None

    def reference_names(self) -> list[str]:
        return []

    def describe(self, architecture: Architecture) -> str:
        assert isinstance(architecture, Nb201Genotype)
        return "\n".join(
            f"node {node}: " + ", ".join(f"{op} <- node {source}" for source, op in enumerate(ops))
            for node, ops in enumerate(architecture.nodes, start=1)
        )

    def differences(self, a: Architecture, b: Architecture) -> list[dict[str, object]]:
        """Per edge whose op differs."""
        assert isinstance(a, Nb201Genotype) and isinstance(b, Nb201Genotype)
        return [
            {"edge": f"{source}->{node}", "a": op_a, "b": op_b, "text": f"edge {source}->{node}: a {op_a}, b {op_b}"}
            for (node, source, op_a), (_, _, op_b) in zip(a.edges(), b.edges(), strict=True)
            if op_a != op_b
        ]

    def alphas_layout(self, experiment: ExperimentConfig) -> dict[str, Any]:
        return {}

    def expected_alpha_rows(self, layout: dict[str, Any]) -> dict[str, int]:
        return {"alphas": NB201_EDGES}

    def alpha_row_labels(self, layout: dict[str, Any]) -> dict[str, list[str]]:
        return {"alphas": [f"{j}->{i}" for i in range(1, 4) for j in range(i)]}

    def derive(
        self, probabilities: dict[str, torch.Tensor], candidates: tuple[str, ...], layout: dict[str, Any]
    ) -> Nb201Genotype:
        """Per edge the argmax over all five ops, ``none`` included (softmax keeps the argmax)."""
        if tuple(candidates) != NB201_OPS:
            raise ValueError(f"NAS-Bench-201 alphas have the columns {NB201_OPS}, got {candidates}")
        return Nb201Genotype.from_alphas(probabilities["alphas"])

    def build_joint_network(
        self, experiment: ExperimentConfig, in_channels: int, num_classes: int
    ) -> Nb201JointNetwork:
        search, nb201 = experiment.search, experiment.nasbench201
        return Nb201JointNetwork(
            in_channels=in_channels,
            num_classes=num_classes,
            image_size=experiment.data.image_size,
            channels=nb201.channels,
            cells_per_stage=nb201.cells_per_stage,
            head_channels=search.head_channels,
            fix_heads=search.fix_heads,
            learnable_ensemble=search.learnable_ensemble,
            layout=nb201.layout,
        )

    def retrain_spec(self, experiment: ExperimentConfig, in_channels: int, num_classes: int) -> RetrainSpec:
        """The benchmark trains the searched size: the section's C and N, no auxiliary head."""
        nb201 = experiment.nasbench201
        image_size = experiment.data.image_size
        return RetrainSpec(
            "cifar", in_channels, num_classes, image_size, nb201.channels, nb201.cells_per_stage, 1, False
        )

    def paper_network(
        self, architecture: Architecture, dataset: str, channels: int | None, cells: int | None
    ) -> tuple[RetrainSpec, dict[str, object], str]:
        """The benchmark's C=16, N=5 at 32 px (CIFAR only)."""
        if dataset == "imagenet":
            raise ConfigError(
                "NAS-Bench-201 cells are summarised at the benchmark's 32 px: use --dataset cifar10 or cifar100"
            )
        classes = 100 if dataset == "cifar100" else 10
        spec = RetrainSpec("cifar", 3, classes, 32, channels or 16, cells or 5, 1, False)
        shape = {
            "space": "nasbench201",
            "channels": spec.init_channels,
            "cells_per_stage": spec.cells,
            "image_size": 32,
        }
        return spec, shape, f"{dataset}: NAS-Bench-201 C={spec.init_channels}, N={spec.cells} per stage, 32 px input"

    def build_retrain_network(self, architecture: Architecture, spec: RetrainSpec) -> RetrainModel:
        assert isinstance(architecture, Nb201Genotype)
        return Nb201RetrainNetwork(architecture, spec)

    def benchmark(self, experiment: ExperimentConfig) -> Callable[[Architecture], dict[str, float] | None] | None:
        """``nasbench201.benchmark_file``: a NAS-Bench-201 / NATS-Bench export."""
        path = experiment.nasbench201.benchmark_file
        if not path:
            return None
        lookup = JsonBenchmarkLookup(Path(path))
        return lambda architecture: lookup.metrics(architecture) if isinstance(architecture, Nb201Genotype) else None

    def drawings(self, architecture: Architecture) -> list[tuple[str, str]]:
        assert isinstance(architecture, Nb201Genotype)
        return [("NAS-Bench-201 cell", nb201_cell_svg(architecture))]

    def write_diagrams(self, architecture: Architecture, out_dir: Path) -> list[Path]:
        assert isinstance(architecture, Nb201Genotype)
        return write_nb201_cell_diagram(architecture, out_dir)
