"""The interface every search space implements, so the search loop, runners, CLI and pipelines
never branch on the space: they ask the registry (``cdarts.spaces.get_space``) instead.

A space owns its architecture type (parse, JSON), the rule that turns alpha probabilities into
an architecture (the one derivation path: the live model and an alphas file both go through
:meth:`SearchSpace.derive_from_alphas`), the builders of its joint network and retrain network,
its diagrams and its description. ``layout`` is the small dictionary an alphas file stores to
read its rows (``{"n_nodes": 4}`` for DARTS cells, the stage layers for the chain space).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from cdarts.architecture import Architecture
    from cdarts.config import ExperimentConfig
    from cdarts.spaces.shared.joint_base import JointModel
    from cdarts.spaces.shared.retrain_model import RetrainModel
    from cdarts.spaces.shared.retrain_spec import RetrainSpec


class SearchSpace(ABC):
    """One search space: ``name`` is its config value (``search_space: <name>``)."""

    name: ClassVar[str]
    architecture_type: ClassVar[type]

    # -- architectures ---------------------------------------------------------------------------

    @abstractmethod
    def architecture_from_dict(self, data: dict[str, Any]) -> Architecture:
        """Read the space's JSON object (``to_dict`` of its architecture type)."""

    @abstractmethod
    def parse(self, text: str) -> Architecture | None:
        """The architecture ``text`` names in this space's own forms (a reference name, the
        space's string form), or None when the text is not of this space."""

    def read_file_text(self, text: str, origin: str) -> Architecture | None:
        """The architecture a file's (stripped) text holds in one of this space's file forms, or
        None when it is none of them; our JSON carrying ``"space"`` is read before any space is
        asked. By default the forms :meth:`parse` reads."""
        return self.parse(text)

    @abstractmethod
    def reference_names(self) -> list[str]:
        """Names of the published architectures :meth:`parse` knows."""

    @abstractmethod
    def describe(self, architecture: Architecture) -> str:
        """A few human-readable lines: per node its kept edges, or per stage its blocks."""

    @abstractmethod
    def differences(self, a: Architecture, b: Architecture) -> list[dict[str, object]]:
        """Where two architectures of this space differ as networks (each entry has ``text``, a
        one-line description, plus the space's own fields); empty when they are the same."""

    def text_forms(self, architecture: Architecture) -> dict[str, str]:
        """The architecture's text forms by name (``text`` at least; DARTS adds its two string
        forms), for ``cdarts genotype convert``."""
        return {"text": architecture.to_string()}

    # -- alphas and derivation -------------------------------------------------------------------

    @abstractmethod
    def alphas_layout(self, experiment: ExperimentConfig) -> dict[str, Any]:
        """What an alphas file of this space must store to be read without the config."""

    @abstractmethod
    def expected_alpha_rows(self, layout: dict[str, Any]) -> dict[str, int]:
        """Rows of each alphas tensor (edges or slots) by name."""

    @abstractmethod
    def alpha_row_labels(self, layout: dict[str, Any]) -> dict[str, list[str]]:
        """A label per row of each alphas tensor (``j->i`` edges, ``stage s slot l``)."""

    def alpha_probabilities(self, alphas: dict[str, torch.Tensor], layout: dict[str, Any]) -> dict[str, torch.Tensor]:
        """softmax(alphas) per row, on the CPU in float32 (a space with masked candidates
        overrides this)."""
        return {name: torch.softmax(tensor.detach().float().cpu(), dim=-1) for name, tensor in alphas.items()}

    @abstractmethod
    def derive(
        self, probabilities: dict[str, torch.Tensor], candidates: tuple[str, ...], layout: dict[str, Any]
    ) -> Architecture:
        """The architecture the alpha probabilities select, by the space's derivation rule."""

    def derive_from_alphas(
        self, alphas: dict[str, torch.Tensor], candidates: tuple[str, ...], layout: dict[str, Any]
    ) -> Architecture:
        """The one derivation path: probabilities of raw alphas, then the space's rule."""
        return self.derive(self.alpha_probabilities(alphas, layout), candidates, layout)

    def sample_architectures(
        self, count: int, seed: int, candidates: tuple[str, ...], layout: dict[str, Any]
    ) -> list[Architecture]:
        """``count`` distinct random architectures, for baselines at the searched one's budget.

        Each is derived from i.i.d. standard-normal alphas by this space's own rule, so every
        derivation constraint holds (DARTS: two inputs per node from distinct predecessors, never
        ``none``; chain: a stage's first slot is not skip) and, the rows being exchangeable, every
        derivable architecture is equally likely. The same seed gives the same list. Raises
        ValueError when fewer than ``count`` distinct architectures turn up in 100 x count draws.
        """
        generator = torch.Generator().manual_seed(seed)
        rows = self.expected_alpha_rows(layout)
        found: dict[str, Architecture] = {}
        for _ in range(100 * count):
            if len(found) == count:
                break
            alphas = {name: torch.randn(n, len(candidates), generator=generator) for name, n in rows.items()}
            architecture = self.derive_from_alphas(alphas, candidates, layout)
            found.setdefault(architecture.to_string(), architecture)
        if len(found) < count:
            raise ValueError(f"the {self.name} space gave only {len(found)} distinct architectures, {count} were asked")
        return list(found.values())

    # -- networks --------------------------------------------------------------------------------

    @abstractmethod
    def build_joint_network(self, experiment: ExperimentConfig, in_channels: int, num_classes: int) -> JointModel:
        """S, E, the weight pool and the heads of the search, for the experiment's image size."""

    @abstractmethod
    def retrain_spec(self, experiment: ExperimentConfig, in_channels: int, num_classes: int) -> RetrainSpec:
        """The retrain network's shape (stored with the weights) for this space's architectures."""

    @abstractmethod
    def build_retrain_network(self, architecture: Architecture, spec: RetrainSpec) -> RetrainModel:
        """The discrete network of ``architecture`` trained from scratch."""

    @abstractmethod
    def paper_network(
        self, architecture: Architecture, dataset: str, channels: int | None, cells: int | None
    ) -> tuple[RetrainSpec, dict[str, object], str]:
        """The retrain network's shape at a paper's sizes for ``dataset`` (cifar10, cifar100,
        imagenet), with optional width and depth overrides: the spec, its shape fields for JSON,
        and a one-line heading. Combinations the space has no paper size for raise ConfigError."""

    def retrain_regularisation(self, experiment: ExperimentConfig, params_without_aux: int) -> tuple[float, float]:
        """(weight decay, final drop-path probability) of the retrain: the recipe's values unless
        the space has a rule of its own."""
        return experiment.retrain.weight_decay, experiment.retrain.drop_path_prob

    def benchmark(self, experiment: ExperimentConfig) -> Callable[[Architecture], dict[str, float] | None] | None:
        """A tabular benchmark's numbers for an architecture (looked up every cycle), when the
        space has one and the config names it; read here, so a bad file fails before any work."""
        return None

    # -- pictures --------------------------------------------------------------------------------

    @abstractmethod
    def drawings(self, architecture: Architecture) -> list[tuple[str, str]]:
        """(caption, SVG) of every drawing of the architecture."""

    @abstractmethod
    def write_diagrams(self, architecture: Architecture, out_dir: Path) -> list[Path]:
        """Write the architecture's SVG files into ``out_dir``; their paths."""
