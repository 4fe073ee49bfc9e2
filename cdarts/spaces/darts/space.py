"""The DARTS cell space: normal and reduction cells, two alphas tensors, the CIFAR or ImageNet
macro skeleton (../shared/reference/cdarts-algorithm.md sections 2-6)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cdarts.errors import ConfigError
from cdarts.spaces.base import SearchSpace
from cdarts.spaces.darts.architecture import Genotype, cell_from_probabilities
from cdarts.spaces.darts.candidates import PRIMITIVES
from cdarts.spaces.darts.cells import node_edge_offsets, num_edges
from cdarts.spaces.darts.config import DartsConfig
from cdarts.spaces.darts.diagram import cell_svg, write_cell_diagrams
from cdarts.spaces.darts.joint_network import JointNetwork
from cdarts.spaces.darts.parser import (
    parse_genotype_json,
    parse_genotype_string,
    reference_genotype_names,
    resolve_genotype,
)
from cdarts.spaces.darts.retrain_network import RetrainNetwork
from cdarts.spaces.shared.retrain_model import RetrainModel
from cdarts.spaces.shared.retrain_spec import RetrainSpec
from cdarts.train.recipe import cifar_param_count_rule

if TYPE_CHECKING:
    from cdarts.architecture import Architecture
    from cdarts.config import ExperimentConfig, SearchConfig


def _state_name(index: int) -> str:
    return {0: "c_{k-2}", 1: "c_{k-1}"}.get(index, f"node {index - 2}")


def build_joint_network(
    search: SearchConfig, darts: DartsConfig, in_channels: int, num_classes: int, image_size: int
) -> JointNetwork:
    """The joint network for images of ``in_channels`` x ``image_size`` x ``image_size``: its
    shape from ``darts``, the heads and execution settings from ``search``."""
    return JointNetwork(
        stem=darts.stem,
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size,
        init_channels=darts.init_channels,
        stem_multiplier=darts.stem_multiplier,
        search_cells=darts.search_cells,
        eval_cells=darts.eval_cells,
        n_nodes=darts.n_nodes,
        primitives=PRIMITIVES,
        aggregation=darts.node_aggregation,
        pool_batchnorm=darts.pool_batchnorm,
        head_channels=search.head_channels,
        fix_heads=search.fix_heads,
        learnable_ensemble=search.learnable_ensemble,
        pool_transfer=darts.pool_transfer,
        shared_relu=search.impl == "fast",
        fused_sums=search.impl == "fast",
        channels_last=search.impl == "fast",
        activation_checkpointing=search.activation_checkpointing,
    )


# The paper's retrain sizes per data set: (stem, C, cells, stem multiplier, image size, classes).
PAPER_SIZES: dict[str, RetrainSpec] = {
    "cifar10": RetrainSpec("cifar", 3, 10, 32, 36, 20, 3, True),
    "cifar100": RetrainSpec("cifar", 3, 100, 32, 36, 20, 3, True),
    "imagenet": RetrainSpec("imagenet", 3, 1000, 224, 48, 14, 1, True),
}


class DartsSpace(SearchSpace):
    name = "darts"
    architecture_type = Genotype

    def architecture_from_dict(self, data: dict[str, Any]) -> Genotype:
        return Genotype.from_dict(data)

    def parse(self, text: str) -> Genotype | None:
        if text.startswith("Genotype") or text.upper() in {name.upper() for name in reference_genotype_names()}:
            return resolve_genotype(text)
        return None

    def read_file_text(self, text: str, origin: str) -> Genotype | None:
        """A ``Genotype(...)`` string, our JSON without ``"space"`` (``schema_version``) or the
        CDARTS per-stage JSON; a reference name in a file is not read as the architecture."""
        if text.startswith("Genotype"):
            return parse_genotype_string(text)
        if text.startswith("{"):
            return parse_genotype_json(text, origin)
        return None

    def reference_names(self) -> list[str]:
        return reference_genotype_names()

    def describe(self, architecture: Architecture) -> str:
        assert isinstance(architecture, Genotype)
        lines = []
        for name, reduction in (("normal", False), ("reduce", True)):
            nodes, concat = architecture.cell(reduction)
            lines.append(f"{name} cell (concat {list(concat)}):")
            for i, node in enumerate(nodes):
                edges = ", ".join(f"{op} <- {_state_name(index)}" for op, index in node)
                lines.append(f"  node {i}: {edges}")
        return "\n".join(lines)

    def differences(self, a: Architecture, b: Architecture) -> list[dict[str, object]]:
        """Per (cell, node), the edges only in ``a`` and only in ``b`` (edge order ignored)."""
        assert isinstance(a, Genotype) and isinstance(b, Genotype)
        found: list[dict[str, object]] = []
        for cell, reduction in (("normal", False), ("reduce", True)):
            (nodes_a, concat_a), (nodes_b, concat_b) = a.cell(reduction), b.cell(reduction)
            for i in range(max(len(nodes_a), len(nodes_b))):
                edges_a = set(nodes_a[i]) if i < len(nodes_a) else set()
                edges_b = set(nodes_b[i]) if i < len(nodes_b) else set()
                if edges_a != edges_b:
                    only_a = sorted([op, index] for op, index in edges_a - edges_b)
                    only_b = sorted([op, index] for op, index in edges_b - edges_a)
                    text = f"{cell} node {i}: a has {only_a}, b has {only_b}"
                    found.append({"cell": cell, "node": i, "only_a": only_a, "only_b": only_b, "text": text})
            if set(concat_a) != set(concat_b):
                text = f"{cell} concat: a {list(concat_a)}, b {list(concat_b)}"
                found.append({"cell": cell, "concat_a": list(concat_a), "concat_b": list(concat_b), "text": text})
        return found

    def text_forms(self, architecture: Architecture) -> dict[str, str]:
        assert isinstance(architecture, Genotype)
        nested, flat = architecture.to_string(), architecture.to_string(flat=True)
        return {"text": nested, "nested": nested, "flat": flat}

    def alphas_layout(self, experiment: ExperimentConfig) -> dict[str, Any]:
        return {"n_nodes": experiment.darts.n_nodes}

    def expected_alpha_rows(self, layout: dict[str, Any]) -> dict[str, int]:
        rows = num_edges(int(layout["n_nodes"]))
        return {"alphas_normal": rows, "alphas_reduce": rows}

    def alpha_row_labels(self, layout: dict[str, Any]) -> dict[str, list[str]]:
        offsets = node_edge_offsets(int(layout["n_nodes"]))
        edges = [f"{j}->{i}" for i, _ in enumerate(offsets) for j in range(2 + i)]
        return {"alphas_normal": edges, "alphas_reduce": edges}

    def derive(
        self, probabilities: dict[str, torch.Tensor], candidates: tuple[str, ...], layout: dict[str, Any]
    ) -> Genotype:
        """Per node the two strongest edges by their best non-``none`` op."""
        n_nodes = int(layout["n_nodes"])
        concat = tuple(range(2, 2 + n_nodes))
        return Genotype(
            normal=cell_from_probabilities(probabilities["alphas_normal"], n_nodes, candidates),
            normal_concat=concat,
            reduce=cell_from_probabilities(probabilities["alphas_reduce"], n_nodes, candidates),
            reduce_concat=concat,
        )

    def build_joint_network(self, experiment: ExperimentConfig, in_channels: int, num_classes: int) -> JointNetwork:
        size = experiment.data.image_size
        return build_joint_network(experiment.search, experiment.darts, in_channels, num_classes, size)

    def retrain_spec(self, experiment: ExperimentConfig, in_channels: int, num_classes: int) -> RetrainSpec:
        network = experiment.darts.retrain
        return RetrainSpec(
            network.stem,
            in_channels,
            num_classes,
            experiment.data.image_size,
            network.init_channels,
            network.cells,
            network.stem_multiplier,
            experiment.retrain.auxiliary_weight > 0,
        )

    def paper_network(
        self, architecture: Architecture, dataset: str, channels: int | None, cells: int | None
    ) -> tuple[RetrainSpec, dict[str, object], str]:
        paper = PAPER_SIZES[dataset]
        spec = dataclasses.replace(paper, init_channels=channels or paper.init_channels, cells=cells or paper.cells)
        if spec.cells < 4:
            raise ConfigError("a DARTS-space network needs at least 4 cells (one in each of its three stages)")
        shape = {
            "space": "darts",
            "init_channels": spec.init_channels,
            "cells": spec.cells,
            "image_size": spec.image_size,
        }
        return spec, shape, f"{dataset}: C={spec.init_channels}, {spec.cells} cells, {spec.image_size} px input"

    def build_retrain_network(self, architecture: Architecture, spec: RetrainSpec) -> RetrainModel:
        assert isinstance(architecture, Genotype)
        return RetrainNetwork(architecture, spec)

    def retrain_regularisation(self, experiment: ExperimentConfig, params_without_aux: int) -> tuple[float, float]:
        """The CIFAR reference rule picks both by parameter count (``darts.retrain.param_count_rule``)."""
        if experiment.darts.retrain.param_count_rule:
            return cifar_param_count_rule(params_without_aux)
        return super().retrain_regularisation(experiment, params_without_aux)

    def drawings(self, architecture: Architecture) -> list[tuple[str, str]]:
        assert isinstance(architecture, Genotype)
        return [("Normal cell", cell_svg(architecture, False)), ("Reduction cell", cell_svg(architecture, True))]

    def write_diagrams(self, architecture: Architecture, out_dir: Path) -> list[Path]:
        assert isinstance(architecture, Genotype)
        return write_cell_diagrams(architecture, out_dir)
