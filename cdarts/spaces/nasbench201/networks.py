"""NAS-Bench-201 cells and the ResNet-like macro skeleton around them
(../shared/reference/cdarts-algorithm.md section 7).

A cell has one input (node 0) and three computed nodes; node i is the **sum** of one op on every
earlier node, and the cell's output is node 3. Macro skeleton: a 3x3 stem conv + BN (C channels),
then N cells, a ResNet basic block to 2C (stride 2), N cells, a block to 4C, N cells, global
average pooling and a linear classifier (N = 5, C = 16 in the benchmark). In the search network
every edge mixes the five ops with one 6 x 5 alpha tensor shared by all cells.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cdarts.spaces.nasbench201.architecture import NB201_EDGES, Nb201Genotype
from cdarts.spaces.nasbench201.candidates import NB201_OPS
from cdarts.spaces.shared.conv_blocks import ReLUConvBN, Zero


def build_nb201_op(name: str, channels: int, affine: bool) -> nn.Module:
    """One of the five ops on a stride-1 edge of ``channels`` channels."""
    factories: dict[str, Callable[[], nn.Module]] = {
        "none": lambda: Zero(1),
        "skip_connect": nn.Identity,
        "nor_conv_1x1": lambda: ReLUConvBN(channels, channels, 1, 1, 0, affine),
        "nor_conv_3x3": lambda: ReLUConvBN(channels, channels, 3, 1, 1, affine),
        "avg_pool_3x3": lambda: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    }
    return factories[name]()


def build_nb201_stem(in_channels: int, channels: int) -> nn.Sequential:
    """3x3 conv (no bias) + BN to C channels."""
    return nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))


def nb201_edge_index(node: int, source: int) -> int:
    """Row of edge (source -> node) in node-major order: (1<-0), (2<-0), (2<-1), (3<-0), ..."""
    return node * (node - 1) // 2 + source


class Nb201SearchCell(nn.Module):
    """Every edge is ``sum_k w_k * op_k(x)`` over the five ops (``none`` adds nothing)."""

    def __init__(self, channels: int, affine: bool = False) -> None:
        super().__init__()
        self.edge_ops = [[build_nb201_op(name, channels, affine) for name in NB201_OPS] for _ in range(NB201_EDGES)]
        self.edges = nn.ModuleList(nn.ModuleList(ops) for ops in self.edge_ops)
        self._active = [k for k, name in enumerate(NB201_OPS) if name != "none"]

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W); weights: (6, 5) softmax(alphas) -> (N, C, H, W)."""
        states = [x]
        for node in range(1, 4):
            total = torch.zeros_like(x)
            for source in range(node):
                edge = nb201_edge_index(node, source)
                ops = self.edge_ops[edge]
                for k in self._active:
                    total = total + weights[edge, k] * ops[k](states[source])
            states.append(total)
        return states[3]


class Nb201DerivedCell(nn.Module):
    """The discrete cell of a genotype; ``none`` edges are left out (a node with only ``none``
    edges is zeros, as in the benchmark)."""

    def __init__(self, genotype: Nb201Genotype, channels: int, affine: bool = True) -> None:
        super().__init__()
        self.genotype = genotype
        self.sources = [(node, source) for node, source, op in genotype.edges() if op != "none"]
        self.ops = nn.ModuleList(build_nb201_op(op, channels, affine) for _, _, op in genotype.edges() if op != "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x, torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x)]
        for (node, source), op in zip(self.sources, self.ops, strict=True):
            states[node] = states[node] + op(states[source])
        return states[3]


class ResNetBasicBlock(nn.Module):
    """Stride-2 block between stages: two ReLU-conv3x3-BN units; shortcut 2x2 avg-pool + 1x1 conv."""

    def __init__(self, c_in: int, c_out: int, affine: bool) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, affine)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv_b(self.conv_a(x)) + self.shortcut(x)
        return out


def build_nb201_layers(
    channels: int,
    cells_per_stage: int,
    genotype: Nb201Genotype | None,
    affine: bool,
    block_affine: bool | None = None,
) -> nn.ModuleList:
    """N cells, a basic block to 2C, N cells, a block to 4C, N cells: search cells when
    ``genotype`` is None, else the genotype's derived cells. ``affine`` is the cells' BN flag,
    ``block_affine`` the ResNet blocks' (default: the same)."""
    block_affine = affine if block_affine is None else block_affine
    layers: list[nn.Module] = []
    width = channels
    for stage in range(3):
        for _ in range(cells_per_stage):
            layers.append(
                Nb201SearchCell(width, affine) if genotype is None else Nb201DerivedCell(genotype, width, affine)
            )
        if stage < 2:
            layers.append(ResNetBasicBlock(width, 2 * width, block_affine))
            width *= 2
    return nn.ModuleList(layers)


def nb201_block_positions(cells_per_stage: int) -> tuple[int, int]:
    """Indices of the two stride-2 ResNet blocks in the layer list."""
    return cells_per_stage, 2 * cells_per_stage + 1


def run_nb201_layers(layers: nn.ModuleList, x: torch.Tensor, weights: torch.Tensor | None) -> list[torch.Tensor]:
    """Every layer's output; search cells get ``weights`` = softmax(alphas), shape (6, 5)."""
    outputs = []
    for layer in layers:
        x = layer(x, weights) if isinstance(layer, Nb201SearchCell) else layer(x)
        outputs.append(x)
    return outputs


class Nb201Network(nn.Module):
    """The macro skeleton around search cells (``genotype=None``, one shared 6 x 5 ``alphas``) or
    around the derived cells of ``genotype``.

    Args:
        num_classes, in_channels: the data.
        channels: C of the first stage (16 in the benchmark).
        cells_per_stage: N (5 in the benchmark).
        genotype: build the discrete network of this genotype instead of the search network.
        affine: BN affine flag of the cells (False in search cells, True in the derived network).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        channels: int = 16,
        cells_per_stage: int = 5,
        genotype: Nb201Genotype | None = None,
        affine: bool | None = None,
    ) -> None:
        super().__init__()
        affine = genotype is not None if affine is None else affine
        self.genotype = genotype
        self.stem = build_nb201_stem(in_channels, channels)
        self.layers = build_nb201_layers(channels, cells_per_stage, genotype, affine)
        self.classifier = nn.Linear(4 * channels, num_classes)
        self.alphas = nn.Parameter(1e-3 * torch.randn(NB201_EDGES, len(NB201_OPS))) if genotype is None else None

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas] if self.alphas is not None else []

    def current_genotype(self) -> Nb201Genotype:
        if self.alphas is None:
            raise RuntimeError("a derived network has no alphas")
        return Nb201Genotype.from_alphas(self.alphas)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, num_classes); H and W divisible by 4."""
        weights = torch.softmax(self.alphas, dim=-1) if self.alphas is not None else None
        features = run_nb201_layers(self.layers, self.stem(x), weights)[-1]
        logits: torch.Tensor = self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(features, 1), 1))
        return logits
