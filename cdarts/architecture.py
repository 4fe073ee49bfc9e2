"""One name for the discrete architecture of every search space, and how to read one.

``Architecture`` is a DARTS-space :class:`Genotype`, a NAS-Bench-201 :class:`Nb201Genotype` or a
:class:`ChainArchitecture`. All three are frozen plain data with ``space``, ``to_dict`` /
``to_json`` (JSON objects carrying ``"space"``) and ``to_string`` (the space's text form).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cdarts.chain_space.architectures import CHAIN_ARCHITECTURES, ChainArchitecture, chain_architecture
from cdarts.errors import GenotypeError
from cdarts.genotype import Genotype, reference_genotype_names, resolve_genotype
from cdarts.nasbench201.genotype import Nb201Genotype
from cdarts.safe_yaml import load_json

Architecture = Genotype | Nb201Genotype | ChainArchitecture
SEARCH_SPACES = ("darts", "nasbench201", "chain")


def architecture_from_dict(data: Any) -> Architecture:
    """Read the JSON object of any space (``"space"`` missing means the DARTS space)."""
    if not isinstance(data, dict):
        raise GenotypeError("genotype JSON must be an object")
    space = data.get("space", "darts")
    if space == "nasbench201":
        return Nb201Genotype.from_dict(data)
    if space == "chain":
        return ChainArchitecture.from_dict(data)
    if space == "darts":
        return Genotype.from_dict(data)
    raise GenotypeError(f"unknown search space {space!r} in genotype JSON; known: {', '.join(SEARCH_SPACES)}")


def architecture_from_json(text: str, origin: str = "genotype JSON") -> Architecture:
    try:
        data = load_json(text, origin, GenotypeError)
    except json.JSONDecodeError as error:
        raise GenotypeError(f"{origin} is not valid JSON: {error.msg} (line {error.lineno})") from None
    return architecture_from_dict(data)


def resolve_architecture(spec: str) -> Architecture:
    """An architecture from text a user typed: a reference name (``DARTS_V2``, ``CDARTS_A``), a
    NAS-Bench-201 arch string (``|op~0|+...``), a chain string (``chain:3-33-...``), a
    ``Genotype(...)`` string, JSON text, or a file holding any of these."""
    text = spec.strip()
    if text.startswith("|"):
        return Nb201Genotype.from_arch_string(text)
    if text.startswith("chain:"):
        return ChainArchitecture.from_string(text)
    if text.upper() in CHAIN_ARCHITECTURES:
        return ChainArchitecture.from_lists(chain_architecture(text))
    if text.startswith("{"):
        return architecture_from_json(text)
    if text.startswith("Genotype") or text.upper() in {n.upper() for n in reference_genotype_names()}:
        return resolve_genotype(text)
    if Path(text).is_file():
        return read_architecture_file(Path(text))
    names = ", ".join([*reference_genotype_names(), *sorted(CHAIN_ARCHITECTURES)])
    raise GenotypeError(
        f"{spec[:80]!r} is neither a known architecture name ({names}), an existing file, a Genotype(...) "
        "string, a NAS-Bench-201 arch string (|op~0|+...) nor a chain string (chain:3-33-...)"
    )


def read_architecture_file(path: Path) -> Architecture:
    """A genotype file of any space (our JSON, the CDARTS per-stage JSON, or one string)."""
    from cdarts.genotype_parser import parse_genotype_file

    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise GenotypeError(f"cannot read genotype file {path}: {error}") from None
    if text.startswith("|"):
        return Nb201Genotype.from_arch_string(text)
    if text.startswith("chain:"):
        return ChainArchitecture.from_string(text)
    if text.startswith("{"):
        data = architecture_from_json(text, str(path)) if '"space"' in text else None
        if data is not None and not isinstance(data, Genotype):
            return data
    return parse_genotype_file(path)
