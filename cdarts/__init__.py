"""cdarts-pipelines: CDARTS (Cyclic Differentiable ARchiTecture Search) as Kubeflow Pipelines."""

from __future__ import annotations

__version__ = "0.1.0"
