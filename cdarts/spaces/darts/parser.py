"""A safe parser for ``Genotype(...)`` strings and the genotype files that hold them.

The DARTS and CDARTS code bases store genotypes as Python source and read them with ``eval``.
This parser accepts exactly that notation without executing anything: the text is parsed into
a syntax tree and only literal lists, tuples, strings, integers, ``range(a, b)`` and the
``Genotype(...)`` call with its four keyword arguments are allowed. Both layouts are accepted:

* nested (CDARTS): ``normal=[[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], ...]``, one list per node;
* flat (DARTS): ``normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...]``, two pairs per node.
"""

from __future__ import annotations

import ast
import json
from importlib import resources
from pathlib import Path
from typing import Any

from cdarts.errors import GenotypeError
from cdarts.safe_yaml import load_json
from cdarts.spaces.darts.architecture import Gene, Genotype

MAX_GENOTYPE_TEXT = 20_000  # far above any real genotype; bounds the parser's work
_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
_EDGES_PER_FLAT_NODE = 2


def _literal(node: ast.AST) -> Any:
    """Convert an allowed syntax-tree node to plain data; anything else is rejected."""
    if isinstance(node, ast.Constant) and (type(node.value) in (int, str)):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(element) for element in node.elts]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "range"
        and not node.keywords
        and len(node.args) == 2
    ):
        start, stop = (_literal(arg) for arg in node.args)
        if type(start) is not int or type(stop) is not int or not 0 <= start < stop <= 64:
            raise GenotypeError("range(...) in a genotype needs two small integer bounds")
        return list(range(start, stop))
    raise GenotypeError(f"unexpected {type(node).__name__} in genotype string (only literals allowed)")


def _cell(value: Any, field: str) -> tuple[Gene, ...]:
    if not isinstance(value, list) or not value:
        raise GenotypeError(f"{field} must be a non-empty list")

    def pair(item: Any) -> tuple[str, int]:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and type(item[1]) is int):
            raise GenotypeError(f"{field}: malformed edge {item!r}, expected ('op_name', input_index)")
        return item[0], item[1]

    nested = all(isinstance(item, list) and item and isinstance(item[0], list) for item in value)
    if nested:
        return tuple(tuple(pair(item) for item in node) for node in value)
    if len(value) % _EDGES_PER_FLAT_NODE:
        raise GenotypeError(f"{field}: a flat genotype needs two edges per node, got {len(value)} edges")
    pairs = [pair(item) for item in value]
    return tuple(tuple(pairs[i : i + _EDGES_PER_FLAT_NODE]) for i in range(0, len(pairs), 2))


def parse_genotype_string(text: str) -> Genotype:
    """Parse ``Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)``."""
    text = text.strip()
    if len(text) > MAX_GENOTYPE_TEXT:
        raise GenotypeError(f"genotype string is too long ({len(text)} characters)")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        raise GenotypeError(f"cannot parse genotype string: {error.__class__.__name__}") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        raise GenotypeError("a genotype string must be a single Genotype(...) expression")
    if call.args:
        raise GenotypeError("Genotype(...) takes keyword arguments only")
    given = {kw.arg: kw.value for kw in call.keywords}
    if None in given or set(given) != set(_FIELDS) or len(call.keywords) != len(_FIELDS):
        raise GenotypeError(f"Genotype(...) needs exactly the keywords {', '.join(_FIELDS)}")
    values = {name: _literal(node) for name, node in given.items()}
    for concat in ("normal_concat", "reduce_concat"):
        if not isinstance(values[concat], list) or not all(type(v) is int for v in values[concat]):
            raise GenotypeError(f"{concat} must be a list of integers or range(a, b)")
    return Genotype(
        normal=_cell(values["normal"], "normal"),
        normal_concat=tuple(values["normal_concat"]),
        reduce=_cell(values["reduce"], "reduce"),
        reduce_concat=tuple(values["reduce_concat"]),
    )


def parse_genotype_file(path: Path) -> Genotype:
    """Read a genotype file in any of the supported forms.

    * our JSON (``schema_version``, written by ``derive-genotype``);
    * the CDARTS JSON mapping stage index (``"0"``, ``"1"``, ...) to a ``Genotype(...)`` string;
      all stages must hold the same genotype (what every released file and the shared-alpha
      search produce);
    * a text file holding one ``Genotype(...)`` string.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise GenotypeError(f"cannot read genotype file {path}: {error}") from None
    stripped = text.strip()
    if not stripped.startswith("{"):
        return parse_genotype_string(stripped)
    return parse_genotype_json(stripped, str(path))


def parse_genotype_json(text: str, origin: str) -> Genotype:
    """Our genotype JSON (``schema_version``) or the CDARTS per-stage mapping; ``origin`` names
    the file in errors."""
    try:
        data = load_json(text, f"genotype file {origin}", GenotypeError)
    except json.JSONDecodeError as error:
        raise GenotypeError(f"{origin} is not valid JSON: {error.msg} (line {error.lineno})") from None
    if not isinstance(data, dict):
        raise GenotypeError(f"{origin} must hold a JSON object")
    if "schema_version" in data:
        return Genotype.from_dict(data)
    if data and all(key.isdigit() and isinstance(value, str) for key, value in data.items()):
        genotypes = {parse_genotype_string(value) for value in data.values()}
        if len(genotypes) != 1:
            raise GenotypeError(f"{origin} holds different genotypes per stage; only one shared genotype is supported")
        return genotypes.pop()
    raise GenotypeError(f"{origin} is neither a genotype JSON (schema_version) nor a stage -> Genotype(...) mapping")


def resolve_genotype(spec: str) -> Genotype:
    """A genotype from a reference name, a file (JSON or text), or a ``Genotype(...)`` string."""
    text = spec.strip()
    if text.startswith("Genotype"):
        return parse_genotype_string(text)
    if text.upper() in {name.upper() for name in reference_genotype_names()}:
        return reference_genotype(text)
    path = Path(text)
    if path.exists():
        return parse_genotype_file(path)
    raise GenotypeError(
        f"{spec!r} is neither a known genotype name ({', '.join(reference_genotype_names())}), "
        "an existing file, nor a Genotype(...) string"
    )


# -- the published genotypes (reference_genotypes.json beside this file) ----------------------


def reference_genotype_names() -> list[str]:
    return sorted(_reference_strings())


def _reference_strings() -> dict[str, str]:
    text = resources.files("cdarts.spaces.darts").joinpath("reference_genotypes.json").read_text()
    table: dict[str, str] = json.loads(text)["genotypes"]
    return table


def reference_genotype(name: str) -> Genotype:
    """A published genotype by name (case-insensitive), e.g. ``DARTS_V2`` or ``CDARTS_CIFAR``."""
    table = {key.upper(): value for key, value in _reference_strings().items()}
    try:
        return parse_genotype_string(table[name.upper()])
    except KeyError:
        raise GenotypeError(f"unknown genotype name {name!r}; known: {', '.join(reference_genotype_names())}") from None
