"""One name for the discrete architecture of every search space, and how to read one.

``Architecture`` is the base of every space's architecture type (a DARTS-space ``Genotype``, a
NAS-Bench-201 ``Nb201Genotype``, a ``ChainArchitecture``): frozen plain data with ``space``,
``to_dict`` / ``to_json`` (JSON objects carrying ``"space"``) and ``to_string`` (the space's text form).
Reading one asks every registered space (``cdarts.spaces``) in turn; the spaces name this module's
types only for type checking, so the import runs one way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cdarts.errors import GenotypeError
from cdarts.safe_yaml import load_json
from cdarts.spaces.registry import get_space, space_names
from cdarts.spaces.shared.architecture_base import ArchitectureBase

Architecture = ArchitectureBase


def architecture_from_dict(data: Any) -> Architecture:
    """Read the JSON object of any space (``"space"`` missing means the DARTS space)."""
    if not isinstance(data, dict):
        raise GenotypeError("genotype JSON must be an object")
    return get_space(str(data.get("space", "darts"))[:40]).architecture_from_dict(data)


def architecture_from_json(text: str, origin: str = "genotype JSON") -> Architecture:
    try:
        data = load_json(text, origin, GenotypeError)
    except json.JSONDecodeError as error:
        raise GenotypeError(f"{origin} is not valid JSON: {error.msg} (line {error.lineno})") from None
    return architecture_from_dict(data)


def _parse_by_any_space(text: str) -> Architecture | None:
    for name in space_names():
        parsed = get_space(name).parse(text)
        if parsed is not None:
            return parsed
    return None


def resolve_architecture(spec: str) -> Architecture:
    """An architecture from text a user typed: a reference name (``DARTS_V2``, ``CDARTS_A``), a
    NAS-Bench-201 arch string (``|op~0|+...``), a chain string (``chain:3-33-...``), a
    ``Genotype(...)`` string, JSON text, or a file holding any of these."""
    text = spec.strip()
    parsed = _parse_by_any_space(text)
    if parsed is not None:
        return parsed
    if text.startswith("{"):
        return architecture_from_json(text)
    if Path(text).is_file():
        return read_architecture_file(Path(text))
    names = ", ".join(name for space in space_names() for name in get_space(space).reference_names())
    raise GenotypeError(
        f"{spec[:80]!r} is neither a known architecture name ({names}), an existing file, a Genotype(...) "
        "string, a NAS-Bench-201 arch string (|op~0|+...) nor a chain string (chain:3-33-...)"
    )


def read_architecture_file(path: Path) -> Architecture:
    """An architecture file of any space: our JSON (carrying ``"space"``), else the first space
    whose file forms the text matches (the DARTS space also reads the CDARTS per-stage JSON and
    ``Genotype(...)`` strings)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise GenotypeError(f"cannot read genotype file {path}: {error}") from None
    if text.startswith("{") and '"space"' in text:
        return architecture_from_json(text, str(path))
    for name in space_names():
        found = get_space(name).read_file_text(text, str(path))
        if found is not None:
            return found
    raise GenotypeError(
        f"{path} holds no architecture: neither our genotype JSON, a Genotype(...) string, a NAS-Bench-201 arch "
        "string (|op~0|+...) nor a chain string (chain:3-33-...)"
    )
