"""The chain-structured (MobileNet-style) space of CDARTS-a/b: per slot one of six inverted
residual blocks, or skip."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cdarts.errors import ConfigError
from cdarts.spaces.base import SearchSpace
from cdarts.spaces.chain.architecture import CHAIN_ARCHITECTURES, ChainArchitecture, chain_architecture
from cdarts.spaces.chain.candidates import CHOICES
from cdarts.spaces.chain.diagram import chain_svg, write_chain_diagram
from cdarts.spaces.chain.joint_network import ChainJointNetwork
from cdarts.spaces.chain.network import STAGE_CHANNELS
from cdarts.spaces.chain.retrain_network import ChainRetrainNetwork
from cdarts.spaces.chain.supernet import architecture_from_probabilities, slot_probabilities
from cdarts.spaces.shared.retrain_model import RetrainModel
from cdarts.spaces.shared.retrain_spec import RetrainSpec

if TYPE_CHECKING:
    from cdarts.architecture import Architecture
    from cdarts.config import ExperimentConfig


def _stage_layers(layout: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(n) for n in layout["stage_layers"])


class ChainSpace(SearchSpace):
    name = "chain"
    architecture_type = ChainArchitecture

    def architecture_from_dict(self, data: dict[str, Any]) -> ChainArchitecture:
        return ChainArchitecture.from_dict(data)

    def parse(self, text: str) -> ChainArchitecture | None:
        if text.startswith("chain:"):
            return ChainArchitecture.from_string(text)
        if text.upper() in CHAIN_ARCHITECTURES:
            return ChainArchitecture.from_lists(chain_architecture(text))
        return None

    def reference_names(self) -> list[str]:
        return sorted(CHAIN_ARCHITECTURES)

    def describe(self, architecture: Architecture) -> str:
        assert isinstance(architecture, ChainArchitecture)
        return "\n".join(
            f"stage {stage + 1} ({STAGE_CHANNELS[stage]} ch): "
            + ", ".join(f"MB{CHOICES[c][1]} {CHOICES[c][0]}x{CHOICES[c][0]} SE" for c in choices)
            for stage, choices in enumerate(architecture.choices)
        )

    def differences(self, a: Architecture, b: Architecture) -> list[dict[str, object]]:
        """Per stage whose block choices differ (its depth included)."""
        assert isinstance(a, ChainArchitecture) and isinstance(b, ChainArchitecture)
        return [
            {
                "stage": stage + 1,
                "a": list(choices_a),
                "b": list(choices_b),
                "text": f"stage {stage + 1}: a {list(choices_a)}, b {list(choices_b)}",
            }
            for stage, (choices_a, choices_b) in enumerate(zip(a.choices, b.choices, strict=True))
            if tuple(choices_a) != tuple(choices_b)
        ]

    def alphas_layout(self, experiment: ExperimentConfig) -> dict[str, Any]:
        return {"stage_layers": list(experiment.chain.stage_layers), "allow_skip": experiment.chain.allow_skip}

    def expected_alpha_rows(self, layout: dict[str, Any]) -> dict[str, int]:
        return {"alphas": sum(_stage_layers(layout))}

    def alpha_row_labels(self, layout: dict[str, Any]) -> dict[str, list[str]]:
        return {
            "alphas": [
                f"stage {stage + 1} slot {slot + 1}"
                for stage, count in enumerate(_stage_layers(layout))
                for slot in range(count)
            ]
        }

    def alpha_probabilities(self, alphas: dict[str, torch.Tensor], layout: dict[str, Any]) -> dict[str, torch.Tensor]:
        """softmax(alphas + mask): a stage's first slot never picks skip."""
        stage_layers, allow_skip = _stage_layers(layout), bool(layout["allow_skip"])
        return {name: slot_probabilities(tensor, stage_layers, allow_skip) for name, tensor in alphas.items()}

    def derive(
        self, probabilities: dict[str, torch.Tensor], candidates: tuple[str, ...], layout: dict[str, Any]
    ) -> ChainArchitecture:
        """Per slot the argmax over the blocks and skip; skip slots are left out."""
        return architecture_from_probabilities(
            probabilities["alphas"], _stage_layers(layout), bool(layout["allow_skip"])
        )

    def build_joint_network(
        self, experiment: ExperimentConfig, in_channels: int, num_classes: int
    ) -> ChainJointNetwork:
        search, chain = experiment.search, experiment.chain
        return ChainJointNetwork(
            in_channels=in_channels,
            num_classes=num_classes,
            image_size=experiment.data.image_size,
            stage_layers=chain.stage_layers,
            allow_skip=chain.allow_skip,
            dropout=chain.dropout,
            head_channels=search.head_channels,
            fix_heads=search.fix_heads,
            learnable_ensemble=search.learnable_ensemble,
        )

    def retrain_spec(self, experiment: ExperimentConfig, in_channels: int, num_classes: int) -> RetrainSpec:
        """Fixed widths: only the data fields and the section's dropout matter."""
        image_size = experiment.data.image_size
        return RetrainSpec("imagenet", in_channels, num_classes, image_size, 0, 0, 1, False, experiment.chain.dropout)

    def paper_network(
        self, architecture: Architecture, dataset: str, channels: int | None, cells: int | None
    ) -> tuple[RetrainSpec, dict[str, object], str]:
        """CDARTS-a/b are ImageNet models at 224 px with fixed widths."""
        if dataset != "imagenet" or channels is not None or cells is not None:
            raise ConfigError(
                "a chain-space architecture is an ImageNet model: use --dataset imagenet, without --channels/--cells"
            )
        assert isinstance(architecture, ChainArchitecture)
        spec = RetrainSpec("imagenet", 3, 1000, 224, 0, 0, 1, False, 0.2)
        shape: dict[str, object] = {"space": "chain", "choices": architecture.as_lists(), "image_size": 224}
        return spec, shape, f"{dataset}: chain-space {architecture.to_string()}, 224 px input"

    def build_retrain_network(self, architecture: Architecture, spec: RetrainSpec) -> RetrainModel:
        assert isinstance(architecture, ChainArchitecture)
        return ChainRetrainNetwork(architecture, spec)

    def drawings(self, architecture: Architecture) -> list[tuple[str, str]]:
        assert isinstance(architecture, ChainArchitecture)
        return [("Chain-space network", chain_svg(architecture.as_lists()))]

    def write_diagrams(self, architecture: Architecture, out_dir: Path) -> list[Path]:
        assert isinstance(architecture, ChainArchitecture)
        return write_chain_diagram(architecture.as_lists(), out_dir)
