"""An SVG drawing of a chain-space network: its fixed parts and searchable layers, top to bottom."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from xml.sax.saxutils import escape

from cdarts.spaces.chain.network import (
    HEAD_CHANNELS,
    LAST_CHANNELS,
    STAGE_CHANNELS,
    STEM_CHANNELS,
    LayerSpec,
    layer_specs,
)

_KERNEL_FILLS = {3: "#cfe2f3", 5: "#fff2cc", 7: "#f4cccc"}
_FIXED_FILL = "#eeeeee"
_WIDTH = 480
_BOX_X, _BOX_W, _BOX_H = 130, 200, 36
_STEP = 50  # box height plus the gap an arrow crosses
_STAGE_GAP = 12  # extra room between stage frames


def _box(kind: str, y: int, title: str, detail: str, fill: str, dashed: bool = False, extra: str = "") -> str:
    """One block: a rounded box with its op on the first line and channels (and stride) on the second.

    The ``<g>`` is left open so the caller can add a note before closing it.
    """
    dash = ' stroke-dasharray="5 3"' if dashed else ""
    cx = _BOX_X + _BOX_W / 2
    return (
        f'<g class="{kind}"{extra}><rect x="{_BOX_X}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="6" '
        f'fill="{fill}" stroke="#444"{dash}/>'
        f'<text x="{cx}" y="{y + 15}" text-anchor="middle">{escape(title)}</text>'
        f'<text x="{cx}" y="{y + 29}" text-anchor="middle" fill="#555" font-size="10">{escape(detail)}</text>'
    )


def _layer_title(spec: LayerSpec) -> str:
    return f"MB{spec.expansion} {spec.kernel_size}x{spec.kernel_size} SE"


def _channels(c_in: int | str, c_out: int | str, stride: int = 1) -> str:
    return f"{c_in}->{c_out}" + (" /2" if stride == 2 else "")


def chain_svg(choices: Sequence[Sequence[int]]) -> str:
    """A top-to-bottom drawing of the network for per-stage choice lists.

    Stem and the fixed DS block, then every inverted-residual layer (``MB<e> <k>x<k> SE``, channels,
    ``/2`` where it strides) framed by stage, then the 1x1 conv, pooling, 1x1 conv and classifier.
    Layer boxes are coloured by kernel size; the repeat of the 80-channel stage's fourth choice is
    dashed and noted "tied". Fixed parts are ``<g class="fixed">``, layers ``<g class="layer">``
    (``class="layer tied"`` for the repeat). Invalid choices raise ``ValueError`` as in
    :func:`layer_specs`.
    """
    choice_lists = [list(stage) for stage in choices]
    stages = layer_specs(choice_lists)
    n_layers = sum(len(layers) for layers in stages)
    body: list[str] = []
    box_tops: list[int] = []  # each box's top y, in flow order, for the arrows between them
    y = 44

    def fixed(title: str, detail: str) -> None:
        nonlocal y
        body.append(_box("fixed", y, title, detail, _FIXED_FILL) + "</g>")
        box_tops.append(y)
        y += _STEP

    fixed("conv 3x3 /2, BN, Swish", _channels("image", STEM_CHANNELS))
    fixed("DS 3x3 SE", _channels(STEM_CHANNELS, STEM_CHANNELS))
    for index, (layers, stage_choices, channels) in enumerate(zip(stages, choice_lists, STAGE_CHANNELS, strict=True)):
        y += _STAGE_GAP
        frame_top = y - 8
        body.append(
            f'<g class="stage" data-stage="{index + 1}" data-channels="{channels}">'
            f'<rect x="10" y="{frame_top}" width="{_BOX_X + _BOX_W}" '
            f'height="{len(layers) * _STEP + 2}" rx="8" fill="#fafafa" stroke="#ccc"/>'
            f'<text x="18" y="{frame_top + 18}" font-weight="bold">stage {index + 1}</text>'
            f'<text x="18" y="{frame_top + 33}" fill="#555">{channels} ch</text>'
        )
        for slot, spec in enumerate(layers):
            # layer_specs repeats only a stage's last slot (the 80-channel stage's fourth), so layers
            # past the number of choices are the tied repeats of the one before them.
            tied = slot >= len(stage_choices)
            detail = _channels(spec.c_in, spec.c_out, spec.stride)
            extra = f' data-kernel="{spec.kernel_size}" data-expansion="{spec.expansion}" data-stride="{spec.stride}"'
            box = _box(
                "layer tied" if tied else "layer",
                y,
                _layer_title(spec),
                detail,
                _KERNEL_FILLS.get(spec.kernel_size, "#ffffff"),
                dashed=tied,
                extra=extra,
            )
            if tied:
                box += (
                    f'<text class="note" x="{_BOX_X + _BOX_W + 18}" y="{y + 15}" fill="#555">tied:</text>'
                    f'<text class="note" x="{_BOX_X + _BOX_W + 18}" y="{y + 29}" fill="#555">'
                    "same choice as above</text>"
                )
            body.append(box + "</g>")
            box_tops.append(y)
            y += _STEP
        body.append("</g>")
    y += _STAGE_GAP
    fixed("conv 1x1, BN, Swish", _channels(STAGE_CHANNELS[-1], LAST_CHANNELS))
    fixed("global avg pool", f"{LAST_CHANNELS}")
    fixed("conv 1x1 + bias, Swish", _channels(LAST_CHANNELS, HEAD_CHANNELS))
    fixed("dropout, linear", _channels(HEAD_CHANNELS, "classes"))
    height = y + 6
    cx = _BOX_X + _BOX_W / 2
    arrows = [
        f'<line x1="{cx}" y1="{top + _BOX_H}" x2="{cx}" y2="{next_top}" stroke="#444" marker-end="url(#arrow)"/>'
        for top, next_top in pairwise(box_tops)
    ]
    legend = [
        f'<rect x="{_BOX_X + 70 * i}" y="10" width="14" height="14" rx="3" fill="{fill}" stroke="#444"/>'
        f'<text x="{_BOX_X + 70 * i + 18}" y="21">{kernel}x{kernel}</text>'
        for i, (kernel, fill) in enumerate(_KERNEL_FILLS.items())
    ]
    described = "; ".join(" ".join(str(c) for c in stage) for stage in choice_lists)
    title = f"chain-space network, {n_layers} MBConv layers, choices per stage: {described}"
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#444"/></marker></defs>',
        '<g class="legend"><text x="18" y="21">kernel:</text>',
        *legend,
        "</g>",
    ]
    return "\n".join([*head, *body, *arrows, "</svg>"]) + "\n"


def write_chain_diagram(choices: Sequence[Sequence[int]], out_dir: Path) -> list[Path]:
    """Write ``layers.svg``; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "layers.svg"
    path.write_text(chain_svg(choices), encoding="utf-8")
    return [path]
