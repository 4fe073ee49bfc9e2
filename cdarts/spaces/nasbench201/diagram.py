"""An SVG drawing of a NAS-Bench-201 cell: the four nodes left to right and one arrow per edge."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from cdarts.spaces.nasbench201.architecture import NB201_NODES, Nb201Genotype
from cdarts.spaces.nasbench201.candidates import NB201_OPS

_OP_COLOURS = {
    "skip_connect": "#7f7f7f",
    "nor_conv_1x1": "#2ca02c",
    "nor_conv_3x3": "#d62728",
    "avg_pool_3x3": "#1f77b4",
}
_WIDTH, _HEIGHT, _Y = 600, 250, 150
_NODE_X = (60, 220, 380, 540)
_NAMES = {0: "in (0)", 1: "1", 2: "2", 3: "out (3)"}
# Edges that skip a node arc away from the straight row so their labels stay clear of it. The
# value is the apex's offset from the row (negative: above). 0->2 and 1->3 overlap between nodes
# 1 and 2, so they take opposite sides; 0->3 spans both and arcs higher than 0->2.
_ARC_APEX = {(0, 2): -60, (1, 3): 60, (0, 3): -110}


def _half_width(node: int) -> int:
    return 28 if node in (0, NB201_NODES - 1) else 18


def nb201_cell_svg(genotype: Nb201Genotype) -> str:
    """A left-to-right drawing of the cell: input, nodes 1 and 2, output, one labelled arrow per edge.

    Arrows are coloured by op. ``none`` edges are not drawn: a none edge carries zeros, so it adds
    nothing to the node it feeds. Each edge is a ``<g class="edge" data-from data-to data-op>``.
    """
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" font-family="sans-serif" font-size="11">',
        f"<title>NAS-Bench-201 cell {escape(genotype.to_arch_string())}</title>",
        "<defs>",
    ]
    # One arrowhead per op so the head takes the colour of its line.
    for op in NB201_OPS:
        if op != "none":
            parts.append(
                f'<marker id="arrow-{op}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
                f'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" '
                f'fill="{_OP_COLOURS.get(op, "#444")}"/></marker>'
            )
    parts.append("</defs>")
    for to_node, from_node, op in genotype.edges():
        if op == "none":
            continue
        colour = _OP_COLOURS.get(op, "#444")
        x1, x2 = _NODE_X[from_node], _NODE_X[to_node]
        mx = (x1 + x2) / 2
        apex = _ARC_APEX.get((from_node, to_node))
        if apex is None:
            shape = f'<line x1="{x1 + _half_width(from_node)}" y1="{_Y}" x2="{x2 - _half_width(to_node)}" y2="{_Y}"'
            label_y = _Y - 6
        else:
            # A quadratic curve between the boxes' top (or bottom) edges: with equal end heights its
            # apex lies halfway between them and the control point.
            y_end = _Y - 14 if apex < 0 else _Y + 14
            y_apex = _Y + apex
            shape = f'<path d="M{x1},{y_end} Q{mx},{2 * y_apex - y_end} {x2},{y_end}" fill="none"'
            label_y = y_apex - 6 if apex < 0 else y_apex + 14
        parts.append(
            f'<g class="edge" data-from="{from_node}" data-to="{to_node}" data-op="{escape(op)}">'
            f'{shape} stroke="{colour}" stroke-width="2" marker-end="url(#arrow-{op})"/>'
            f'<text x="{mx}" y="{label_y}" text-anchor="middle" fill="{colour}">{escape(op)}</text></g>'
        )
    for node, x in enumerate(_NODE_X):
        half = _half_width(node)
        fill = "#cfe2f3" if node == 0 else "#d9ead3" if node == NB201_NODES - 1 else "#fff2cc"
        parts.append(
            f'<g class="node" data-node="{node}"><rect x="{x - half}" y="{_Y - 14}" width="{2 * half}" '
            f'height="28" rx="6" fill="{fill}" stroke="#444"/>'
            f'<text x="{x}" y="{_Y + 4}" text-anchor="middle">{escape(_NAMES[node])}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_nb201_cell_diagram(genotype: Nb201Genotype, out_dir: Path) -> list[Path]:
    """Write ``cell.svg``; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "cell.svg"
    path.write_text(nb201_cell_svg(genotype), encoding="utf-8")
    return [path]
