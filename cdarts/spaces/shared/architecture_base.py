"""What the architecture type of every space provides (frozen plain data)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar


class ArchitectureBase(ABC):
    """A discrete architecture: ``space`` names its space; ``to_dict`` / ``to_json`` give a JSON
    object carrying ``"space"``; ``to_string`` the space's text form."""

    space: ClassVar[str]

    @abstractmethod
    def to_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def to_json(self) -> str: ...

    @abstractmethod
    def to_string(self) -> str: ...
