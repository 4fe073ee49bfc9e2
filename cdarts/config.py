"""Typed experiment config: pydantic models of the YAML file, presets and dotted overrides.

The YAML is parsed once, at the edge (CLI or KFP component), into :class:`ExperimentConfig`;
everything inside takes its own section or plain arguments. Unknown keys and wrong types are
errors with a one-line message naming the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from cdarts.config_base import (
    DEVICE_PATTERN as DEVICE_PATTERN,
)
from cdarts.config_base import (
    DIGITS_IMAGES as DIGITS_IMAGES,
)
from cdarts.config_base import (
    MAX_ARRAY_BYTES as MAX_ARRAY_BYTES,
)
from cdarts.config_base import (
    MAX_BATCH as MAX_BATCH,
)
from cdarts.config_base import (
    MAX_CELLS as MAX_CELLS,
)
from cdarts.config_base import (
    MAX_CHANNELS as MAX_CHANNELS,
)
from cdarts.config_base import (
    MAX_CLASSES as MAX_CLASSES,
)
from cdarts.config_base import (
    MAX_EPOCHS as MAX_EPOCHS,
)
from cdarts.config_base import (  # re-exported: the bounds are part of the config's interface
    MAX_IMAGE_SIZE as MAX_IMAGE_SIZE,
)
from cdarts.config_base import (
    MAX_LR as MAX_LR,
)
from cdarts.config_base import (
    MAX_NODES as MAX_NODES,
)
from cdarts.config_base import (
    MAX_REPEATS as MAX_REPEATS,
)
from cdarts.config_base import (
    MAX_SAMPLES as MAX_SAMPLES,
)
from cdarts.config_base import (
    MAX_SEED as MAX_SEED,
)
from cdarts.config_base import (
    MAX_WORKERS as MAX_WORKERS,
)
from cdarts.config_base import (
    Beta as Beta,
)
from cdarts.config_base import (
    CellCount as CellCount,
)
from cdarts.config_base import (
    Channels as Channels,
)
from cdarts.config_base import (
    ConfigSection as _Section,
)
from cdarts.config_base import SpaceSection, refuse_foreign_sections
from cdarts.config_overrides import SOURCES_WITH_LOCATION as SOURCES_WITH_LOCATION  # re-exported
from cdarts.config_overrides import _merge, parse_overrides
from cdarts.config_overrides import pipeline_overrides as pipeline_overrides  # re-exported
from cdarts.config_overrides import source_overrides as source_overrides  # re-exported
from cdarts.errors import ConfigError
from cdarts.safe_yaml import load_yaml
from cdarts.spaces.chain.config import ChainConfig
from cdarts.spaces.darts.candidates import PARAMETER_FREE_PRIMITIVES
from cdarts.spaces.darts.config import DartsConfig
from cdarts.spaces.nasbench201.config import NasBench201Config

DataSource = Literal["synthetic", "digits", "cifar10", "cifar100", "imagefolder", "mnist", "fashion-mnist"]


class DataConfig(_Section):
    """Where images come from, how they are prepared and augmented."""

    source: DataSource = "digits"
    location: str | None = Field(
        None,
        description="cifar10/cifar100, mnist/fashion-mnist (IDX files): directory or .tar.gz archive;"
        " imagefolder: directory; any of these may be s3://",
    )
    image_size: int = Field(
        32,
        ge=2,
        le=MAX_IMAGE_SIZE,
        description="network input size: stored size (synthetic, digits, mnist, fashion-mnist), crop size "
        "(imagefolder)",
    )
    num_classes: int | None = Field(
        None, ge=2, le=MAX_CLASSES, description="synthetic: class count (default 10); others: checked against the data"
    )
    channels: int = Field(3, ge=1, le=MAX_CHANNELS, description="synthetic only")
    num_train: int = Field(1024, ge=4, le=MAX_SAMPLES, description="synthetic only: training images")
    num_test: int = Field(256, ge=2, le=MAX_SAMPLES, description="synthetic only: test images")
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="digits, and image folders without a val/ split: held-out share"
    )
    augmentation: Literal["cifar", "imagenet", "none"] = "cifar"
    crop_padding: int = Field(
        4, ge=0, le=MAX_IMAGE_SIZE, description="cifar augmentation: zero padding before the random crop"
    )
    random_flip: bool = True
    stats_sample: int = Field(5000, ge=1, le=MAX_SAMPLES, description="image folders: images sampled for mean/std")
    num_workers: int = Field(0, ge=0, le=MAX_WORKERS)
    pin_memory: bool = False

    @model_validator(mode="after")
    def _location_matches_source(self) -> DataConfig:
        needs_location = self.source in ("cifar10", "cifar100", "imagefolder", "mnist", "fashion-mnist")
        if needs_location and not self.location:
            raise ValueError(f"source {self.source!r} needs a location (directory or archive)")
        size = self.image_size
        if self.source == "synthetic":
            count = self.num_train + self.num_test
            needed = count * size**2 * self.channels * 4  # float32 while they are made
            what = f"{count} synthetic images (data.num_train + data.num_test) of data.image_size {size}"
        else:
            needed = DIGITS_IMAGES * size**2 * 4  # grey float32 while they are resized
            what = f"the {DIGITS_IMAGES} digits images at data.image_size {size}"
        if self.source in ("synthetic", "digits") and needed > MAX_ARRAY_BYTES:
            raise ValueError(
                f"{what} would take {needed / (1 << 30):.0f} GiB of memory (at most {MAX_ARRAY_BYTES >> 30} GiB)"
            )
        return self


class RegularizerConfig(_Section):
    """L1 penalty on the raw alphas of parameter-free ops, decaying linearly to zero."""

    enabled: bool = True
    coeff: float = Field(5.0, ge=0, le=1e6)
    ratio: float = Field(0.667, gt=0, le=1, description="fraction of the cycles over which it decays")
    primitives: tuple[str, ...] = PARAMETER_FREE_PRIMITIVES
    # The reference sums the shared alphas once per stage (three times) with shared alphas.
    stage_repeats: int = Field(3, ge=1, le=MAX_CELLS)
    reduction: Literal["sum", "mean"] = Field("sum", description="over the edges (NAS-Bench-201: mean)")


class SearchConfig(_Section):
    """The cyclic joint search (networks, optimisers, losses, loop)."""

    # networks
    # (the DARTS networks' shape is the darts: section)
    head_channels: tuple[Channels, Channels] = (128, 768)
    fix_heads: bool = True
    learnable_ensemble: bool = True
    # loop
    warmup_epochs: int = Field(2, ge=0, le=MAX_EPOCHS, description="S warm-up epochs before the first cycle (P)")
    search_iterations: int = Field(32, ge=1, le=MAX_EPOCHS, description="warm-up epochs + cycles (I)")
    epochs_per_cycle: int = Field(1, ge=1, le=MAX_EPOCHS)
    eval_warmup_epochs: int = Field(1, ge=0, le=MAX_EPOCHS, description="E warm-up epochs on the val split per cycle")
    sample_ratio: float = Field(1.0, gt=0, le=1, description="fraction of batches per epoch")
    batch_size: int = Field(64, ge=2, le=MAX_BATCH, description="per process, for each of the two splits")
    # optimisers
    weight_lr: float = Field(0.08, gt=0, le=MAX_LR)
    eval_weight_lr: float = Field(0.08, gt=0, le=MAX_LR)
    weight_lr_min: float = Field(1e-3, ge=0, le=MAX_LR)
    weight_lr_schedule: Literal["constant", "cosine"] = "constant"
    weight_momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(3e-4, ge=0, le=1)
    arch_lr: float = Field(3e-4, gt=0, le=MAX_LR)
    arch_weight_decay: float = Field(0.0, ge=0, le=1)
    arch_betas: tuple[Beta, Beta] = (0.5, 0.999)
    grad_clip: float = Field(5.0, gt=0, le=1e6)
    grad_clip_scope: Literal["all", "stepped"] = "all"
    zero_grad_to_none: bool = False
    # losses
    distill_type: Literal["smooth_l1", "kl", "mse", "cosine"] = "smooth_l1"
    distill_weight: float = Field(1.0, gt=0, le=1e6, description="lambda: CE / lambda + lambda * T^2 * D")
    distill_temperature: float = Field(2.0, gt=0, le=1e3)
    kl_reduction: Literal["elementwise_mean", "batchmean"] = "elementwise_mean"
    regularizer: RegularizerConfig = RegularizerConfig()
    # execution
    bf16: bool = False
    impl: Literal["fast", "reference"] = Field(
        "fast",
        description="fast: channels_last tensors, one ReLU per edge input shared by its conv ops (and "
        "cuDNN autotuning on CUDA); reference: one module call per candidate op. Same losses and gradients.",
    )
    activation_checkpointing: bool = Field(
        False, description="recompute each cell's activations in backward instead of keeping them (less memory)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> SearchConfig:
        if self.warmup_epochs >= self.search_iterations:
            raise ValueError("search_iterations must exceed warmup_epochs (at least one cycle)")
        if self.weight_lr_min > self.weight_lr:
            raise ValueError("weight_lr_min must not exceed weight_lr")
        return self

    @property
    def num_cycles(self) -> int:
        return self.search_iterations - self.warmup_epochs


class RetrainConfig(_Section):
    """Training the discrete network from scratch (the paper's "augment" stage)."""

    # (the DARTS retrain network's shape is darts.retrain)
    auxiliary_weight: float = Field(0.4, ge=0, le=1e6, description="0 disables the auxiliary head")
    drop_path_prob: float = Field(0.3, ge=0, lt=1, description="final value of the linear ramp")
    epochs: int = Field(600, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(128, ge=2, le=MAX_BATCH, description="per process")
    eval_batch_size: int = Field(256, ge=1, le=MAX_BATCH)
    weight_lr: float = Field(0.025, gt=0, le=MAX_LR)
    weight_lr_min: float = Field(0.0, ge=0, le=MAX_LR)
    warmup_epochs: int = Field(0, ge=0, le=MAX_EPOCHS, description="linear learning-rate warm-up before the cosine")
    weight_momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(3e-4, ge=0, le=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float = Field(5.0, gt=0, le=1e6)
    cutout: int = Field(
        16, ge=0, le=MAX_IMAGE_SIZE, description="cutout square side in pixels (cifar augmentation); 0 = off"
    )
    bf16: bool = False
    channels_last: bool = Field(True, description="channels-last weights and batches (faster convolutions)")
    fused_optimizer: bool = Field(True, description="the fused SGD kernel instead of the per-tensor loop")
    compile: bool = Field(
        False, description="torch.compile the training forward (pays on GPUs; on CPU the compile time dominates)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> RetrainConfig:
        if self.warmup_epochs >= self.epochs:
            raise ValueError("warmup_epochs must be smaller than epochs")
        if self.weight_lr_min > self.weight_lr:
            raise ValueError("weight_lr_min must not exceed weight_lr")
        return self


class EvaluateConfig(_Section):
    """Held-out metrics, model size and speed of the retrained network."""

    batch_size: int = Field(256, ge=1, le=MAX_BATCH)
    throughput_batch_size: int = Field(64, ge=1, le=MAX_BATCH)
    timing_repeats: int = Field(
        20, ge=1, le=MAX_REPEATS, description="timed runs (median reported) after the warm-up runs"
    )
    timing_warmup: int = Field(3, ge=0, le=MAX_REPEATS)


class TrackingConfig(_Section):
    """MLflow tracking and model registry (none of it changes what is trained)."""

    enabled: bool = True
    uri: str | None = Field(
        None,
        description="tracking URI; default $CDARTS_MLFLOW_TRACKING_URI, $MLFLOW_TRACKING_URI, else (outside a "
        "KFP task pod) sqlite:///.cdarts/mlflow.db",
    )
    experiment: str = "cdarts"
    registered_model: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="registered-model name; default cdarts-<dataset>-<search space>, so that the promotion "
        "gate only ever compares models of one dataset and space",
    )
    promotion_margin: float = Field(0.0, ge=0, le=100, description="top-1 a challenger must add to the champion's")


class ExperimentConfig(_Section):
    """A whole experiment; the YAML file's top level."""

    name: str = "experiment"
    search_space: str = Field("darts", description="the search space: the name of one of the sections below")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    deterministic: bool = True
    data: DataConfig = DataConfig()
    search: SearchConfig = SearchConfig()
    retrain: RetrainConfig = RetrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    tracking: TrackingConfig = TrackingConfig()
    # One section per search space (a SpaceSection field named as the space), each space's
    # shape; only the section of search_space is read.
    darts: DartsConfig = DartsConfig()
    nasbench201: NasBench201Config = NasBench201Config()
    chain: ChainConfig = ChainConfig()

    @classmethod
    def space_sections(cls) -> dict[str, type[SpaceSection]]:
        """Every search space's section class by name (the names ``search_space`` accepts)."""
        return {
            name: field.annotation
            for name, field in cls.model_fields.items()
            if isinstance(field.annotation, type) and issubclass(field.annotation, SpaceSection)
        }

    def space_section(self) -> SpaceSection:
        """The section of the configured search space."""
        section: SpaceSection = getattr(self, self.search_space)
        return section

    def space_candidates(self) -> tuple[str, ...]:
        """The configured space's candidate names (the columns of its alphas)."""
        return self.space_section().candidates()

    @field_validator("search_space")
    @classmethod
    def _known_space(cls, value: str) -> str:
        known = cls.space_sections()
        if value not in known:
            raise ValueError(f"unknown search space {value!r} (known: {', '.join(known)})")
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        """The form only (no torch here); :func:`cdarts.devices.resolve_device` checks the machine."""
        if not DEVICE_PATTERN.fullmatch(value):
            raise ValueError("unknown device (use auto, cpu, cuda or cuda:N)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _space_sections_and_regularizer_defaults(cls, data: Any) -> Any:
        """Each space migrates keys of an earlier layout into its section (DARTS: from search: and
        retrain: into darts:); another space's section is refused;
        regulariser settings the user left out follow the search space (its regularizer_defaults)."""
        if not isinstance(data, dict):
            return data
        sections = cls.space_sections()
        for each_section in sections.values():
            data = each_section.migrate_config(data)
        space = data.get("search_space", "darts")
        section_class = sections.get(space) if isinstance(space, str) else None
        if section_class is None:
            return data  # field validation names the unknown space (or its wrong type)
        refuse_foreign_sections(data, sections)
        search = data.get("search")
        regularizer = search.get("regularizer") if isinstance(search, dict) else None
        section = data.get(space)
        if (
            (search is not None and not isinstance(search, dict))
            or (regularizer is not None and not isinstance(regularizer, dict))
            or (section is not None and not isinstance(section, dict))
        ):
            return data  # let field validation report the wrong type
        defaults = section_class.regularizer_defaults(section or {})
        if not defaults:
            return data
        merged = {**defaults, **(regularizer or {})}
        return {**data, "search": {**(search or {}), "regularizer": merged}}

    @model_validator(mode="after")
    def _space_consistent(self) -> ExperimentConfig:
        candidates = self.space_candidates()
        unknown = [p for p in self.search.regularizer.primitives if p not in candidates]
        if self.search.regularizer.enabled and unknown:
            raise ValueError(
                f"search.regularizer.primitives {unknown} are not candidates of the {self.search_space} space "
                f"({', '.join(candidates)})"
            )
        self.space_section().check(self)
        return self

    def digest(self) -> str:
        """A short content hash of everything that decides the results (tracking excluded)."""
        canonical = json.dumps(self.model_dump(mode="json", exclude={"tracking"}), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def registered_model_name(self) -> str:
        """``tracking.registered_model``, else ``cdarts-<dataset>-<space>``: the data source, or
        for an image folder its directory name (``cdarts-imagenet-darts``)."""
        if self.tracking.registered_model:
            return self.tracking.registered_model
        dataset: str = self.data.source
        if self.data.source == "imagefolder" and self.data.location:
            folder = PurePosixPath(self.data.location.rstrip("/")).name.lower()
            dataset = re.sub(r"[^a-z0-9]+", "-", folder).strip("-") or "imagefolder"
        return f"cdarts-{dataset[:80]}-{self.search_space}"


# -- loading ------------------------------------------------------------------------------------


def config_search_dirs() -> list[Path]:
    """Where preset names are looked up: $CDARTS_CONFIG_DIR, then ./configs."""
    dirs = []
    if env := os.environ.get("CDARTS_CONFIG_DIR"):
        dirs.append(Path(env))
    dirs.append(Path.cwd() / "configs")
    return dirs


def resolve_config_path(name_or_path: str) -> Path:
    """A config file path, or a preset name (``tiny``) looked up in :func:`config_search_dirs`."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix == "" and path.parent == Path("."):
        for directory in config_search_dirs():
            candidate = directory / f"{name_or_path}.yaml"
            if candidate.is_file():
                return candidate
    raise ConfigError(f"config {name_or_path!r} not found (neither a file nor a preset name)")


def _format_validation_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif "input" in first and not isinstance(first["input"], dict | list):
        message = f"{message} (got {first['input']!r})"
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    # A whole-config check names its keys in the message itself.
    return f"config error: {where}: {message}{more}" if where else f"config error: {message}{more}"


def build_config(data: dict[str, Any], overrides: list[str] | None = None) -> ExperimentConfig:
    """Validate a raw mapping (plus dotted overrides) into an :class:`ExperimentConfig`."""
    merged = _merge(data, parse_overrides(overrides or []))
    try:
        return ExperimentConfig.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error)) from None


def load_config(name_or_path: str, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML config file or preset and apply ``key.subkey=value`` overrides."""
    path = resolve_config_path(name_or_path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8"), f"config {path}")
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config {path} is not valid YAML{where}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config {path}: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    return build_config(data, overrides)


def load_config_spec(spec: str, overrides: list[str] | None = None) -> ExperimentConfig:
    """A config from a preset name, a file path, or YAML text (what a pipeline parameter holds)."""
    text = spec.strip()
    if "\n" in text or text.startswith("{"):
        try:
            data = load_yaml(text, "the config text")
        except yaml.YAMLError:
            raise ConfigError("the config text is not valid YAML") from None
        if not isinstance(data, dict):
            raise ConfigError("the config text must be a YAML mapping")
        return build_config(data, overrides)
    return load_config(text, overrides)
