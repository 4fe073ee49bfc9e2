"""The candidate operations of the DARTS cell space, in the order CDARTS uses.

The order fixes the columns of the alphas. CDARTS puts ``none`` **last** (DARTS puts it first);
genotype derivation drops that last column, so the two orders must never be mixed.
"""

from __future__ import annotations

PRIMITIVES: tuple[str, ...] = (
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "none",
)

NONE_PRIMITIVE = "none"

# Ops with no parameters whose alphas the L1 regulariser pulls down (reference choice).
PARAMETER_FREE_PRIMITIVES: tuple[str, ...] = ("max_pool_3x3", "avg_pool_3x3", "skip_connect")
