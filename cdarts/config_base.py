"""What every config section shares: the bounds on sizes, the strict base model, and the base of
a search space's own section."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from cdarts.config import ExperimentConfig

# Upper bounds on sizes: generous (far beyond any paper setting) but low enough that a typo
# such as image_size: 1000000 is refused here instead of exhausting memory inside torch.
MAX_IMAGE_SIZE = 4096  # pixels per side; ImageNet crops are 224
MAX_CHANNELS = 4096  # widest layer the networks build is a small multiple of this
MAX_BATCH = 65536  # images per step and split
MAX_CELLS = 256  # cells / layers of a network (the deepest DARTS network has 20)
MAX_NODES = 32  # intermediate nodes of a cell (4 in DARTS); edges grow quadratically
MAX_EPOCHS = 100_000  # epochs, iterations, cycles
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841
MAX_SAMPLES = 10_000_000  # synthetic images, images sampled for statistics
MAX_WORKERS = 256  # data-loader processes
MAX_REPEATS = 100_000  # timing runs
MAX_LR = 100.0  # learning rates; the largest in any config is 0.8
MAX_SEED = 2**32 - 1  # numpy's seed range
# Synthetic and digits images are made in memory as float32 before they are stored: a 16 GiB
# ceiling keeps data-prep within an ordinary node (e.g. 1,000,000 images of 32x32x3 is 12 GiB).
MAX_ARRAY_BYTES = 16 << 30
DIGITS_IMAGES = 1797  # scikit-learn's digits
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]{1,3})?")

CellCount = Annotated[int, Field(ge=1, le=MAX_CELLS)]
Channels = Annotated[int, Field(ge=1, le=MAX_CHANNELS)]
Beta = Annotated[float, Field(ge=0, lt=1)]


class ConfigSection(BaseModel):
    # allow_inf_nan=False: every float field (tuples included) must be finite.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SpaceSection(ConfigSection):
    """The section of one search space (``darts:``, ``nasbench201:``, ``chain:``): the shape of
    its networks, and what the config must know of the space without building anything."""

    def candidates(self) -> tuple[str, ...]:
        """The space's candidate names: the columns of its alphas, in order."""
        raise NotImplementedError

    @classmethod
    def regularizer_defaults(cls, section: dict[str, Any]) -> dict[str, Any]:
        """``search.regularizer`` settings this space implies where the config leaves them out
        (``section`` is this space's raw, not yet validated, section); none by default."""
        return {}

    @classmethod
    def migrate_config(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The raw config with keys of an earlier layout that belong to this space moved into
        its section (warning once); unchanged by default."""
        return data

    def check(self, experiment: ExperimentConfig) -> None:
        """Raise ValueError naming the key when the rest of ``experiment`` does not fit the space."""


def refuse_foreign_sections(data: dict[str, Any], sections: dict[str, type[SpaceSection]]) -> None:
    """A section of another space than ``search_space`` with settings of its own is an error
    (it would be ignored); one equal to the defaults is what a saved config holds and passes.
    ``sections``: every space's section class by name."""
    space = data.get("search_space", "darts")
    for name, model in sections.items():
        given = data.get(name)
        if name == space or given in (None, {}) or not isinstance(given, dict):
            continue
        try:
            at_defaults = model.model_validate(given) == model()
        except ValueError:
            continue  # a bad value: the section's own validation names the key
        if not at_defaults:
            raise ValueError(f"the {name}: section applies to search_space {name} only (this config's is {space})")
