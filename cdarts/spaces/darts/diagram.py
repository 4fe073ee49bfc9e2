"""SVG drawings of a DARTS genotype: one left-to-right diagram per cell (normal, reduction)."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from cdarts.spaces.darts.architecture import Genotype

_OP_COLOURS = {
    "skip_connect": "#7f7f7f",
    "max_pool_3x3": "#1f77b4",
    "avg_pool_3x3": "#17becf",
    "sep_conv_3x3": "#d62728",
    "sep_conv_5x5": "#ff7f0e",
    "dil_conv_3x3": "#2ca02c",
    "dil_conv_5x5": "#9467bd",
}


def cell_svg(genotype: Genotype, reduction: bool) -> str:
    """A left-to-right drawing of one cell: inputs, intermediate nodes, output, labelled edges."""
    nodes, concat = genotype.cell(reduction)
    n_nodes = len(nodes)
    width, height = 200 + 150 * n_nodes, 100 + 70 * n_nodes
    # State positions: the two inputs on the left, nodes on a diagonal, the output on the right.
    pos: dict[int, tuple[float, float]] = {0: (60, height * 0.3), 1: (60, height * 0.7)}
    for i in range(n_nodes):
        pos[2 + i] = (190 + 150 * i, 50 + (height - 100) * i / max(n_nodes - 1, 1))
    out_x, out_y = width - 50, height / 2
    names = {0: "c_{k-2}", 1: "c_{k-1}", **{2 + i: str(i) for i in range(n_nodes)}}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f"<title>{'reduction' if reduction else 'normal'} cell</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#444"/></marker></defs>',
    ]
    for i, node in enumerate(nodes):
        x2, y2 = pos[2 + i]
        for op, index in node:
            x1, y1 = pos[index]
            colour = _OP_COLOURS.get(op, "#444")
            mx, my = (x1 + x2) / 2, (y1 + y2) / 2 - 6
            parts.append(
                f'<line x1="{x1 + 28}" y1="{y1}" x2="{x2 - 22}" y2="{y2}" stroke="{colour}" '
                f'stroke-width="2" marker-end="url(#arrow)"/>'
                f'<text x="{mx}" y="{my}" text-anchor="middle" fill="{colour}">{escape(op)}</text>'
            )
    for state in concat:
        x1, y1 = pos[state]
        parts.append(
            f'<line x1="{x1 + 22}" y1="{y1}" x2="{out_x - 30}" y2="{out_y}" stroke="#bbb" '
            'stroke-dasharray="4 3" marker-end="url(#arrow)"/>'
        )
    for state, (x, y) in pos.items():
        fill = "#cfe2f3" if state < 2 else "#fff2cc"
        parts.append(
            f'<rect x="{x - 28 if state < 2 else x - 22}" y="{y - 14}" width="{56 if state < 2 else 44}" '
            f'height="28" rx="6" fill="{fill}" stroke="#444"/>'
            f'<text x="{x}" y="{y + 4}" text-anchor="middle">{escape(names[state])}</text>'
        )
    parts.append(
        f'<rect x="{out_x - 30}" y="{out_y - 14}" width="60" height="28" rx="6" fill="#d9ead3" '
        f'stroke="#444"/><text x="{out_x}" y="{out_y + 4}" text-anchor="middle">c_k</text></svg>'
    )
    return "\n".join(parts) + "\n"


def write_cell_diagrams(genotype: Genotype, out_dir: Path) -> list[Path]:
    """Write ``normal.svg`` and ``reduce.svg``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, reduction in (("normal", False), ("reduce", True)):
        path = out_dir / f"{name}.svg"
        path.write_text(cell_svg(genotype, reduction), encoding="utf-8")
        paths.append(path)
    return paths
