"""YAML and JSON parsing with a bounded nesting depth.

PyYAML and ``json`` recurse once per nesting level, so a few thousand ``[`` (or indented
mapping levels) end in a RecursionError deep inside the parser. Every file and string the
project reads (configs, ``--set`` values, genotype and architecture files, retrain requests,
cluster settings) goes through :func:`load_yaml` / :func:`load_json`, which scan the text
cheaply first and refuse more than :data:`MAX_DEPTH` levels with one line naming ``what``.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from cdarts.errors import CdartsError, ConfigError

MAX_DEPTH = 64
"""Deepest nesting any file of the project needs is under 10; 64 leaves ample room."""


def _flow_depth(text: str) -> int:
    """The deepest bracket nesting (``[``/``{``), skipping quoted strings and YAML comments."""
    depth = deepest = 0
    quote = ""
    escaped = False
    comment = False
    for char in text:
        if comment:
            comment = char != "\n"
            continue
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
        elif char in "\"'":
            quote = char
        elif char == "#":
            comment = True
    return deepest


def _block_depth(text: str) -> int:
    """The number of distinct indentation levels open at once (block-style nesting), counting
    a ``- `` sequence marker as a level too."""
    stack: list[int] = []
    deepest = 0
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        while stack and stack[-1] > indent:
            stack.pop()
        if not stack or stack[-1] < indent:
            stack.append(indent)
        # "- - - a" nests on one line
        dashes = 0
        rest = stripped
        while rest.startswith("- ") or rest == "-":
            dashes += 1
            rest = rest[2:].lstrip(" ")
        deepest = max(deepest, len(stack) + dashes)
    return deepest


def check_depth(text: str, what: str, *, block: bool = True, error: type[CdartsError] = ConfigError) -> None:
    """Raise ``error`` (one line naming ``what``) if ``text`` nests deeper than :data:`MAX_DEPTH`."""
    depth = max(_flow_depth(text), _block_depth(text) if block else 0)
    if depth > MAX_DEPTH:
        raise error(f"{what} nests deeper than {MAX_DEPTH} levels")


def load_yaml(text: str, what: str, error: type[CdartsError] = ConfigError) -> Any:
    """``yaml.safe_load`` after the depth check; ``yaml.YAMLError`` is left to the caller."""
    check_depth(text, what, error=error)
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise error(f"{what} nests too deeply to parse") from None


def load_json(text: str, what: str, error: type[CdartsError] = ConfigError) -> Any:
    """``json.loads`` after the depth check; ``json.JSONDecodeError`` is left to the caller."""
    check_depth(text, what, block=False, error=error)
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"{what} nests too deeply to parse") from None
