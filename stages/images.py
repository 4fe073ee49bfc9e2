"""Default container images of the components; ``cdarts compile --image gpu=REF`` replaces them.

The GPU image (CUDA runtime + torch) runs search, retrain and evaluate; the slim CPU image runs
data prep and the genotype steps. Both hold this package with every dependency, so nothing is
installed at run time. For production, pin them by digest at compile time.
"""

from __future__ import annotations

from cdarts import __version__

GPU_IMAGE = f"ghcr.io/cdarts-pipelines/cdarts-gpu:{__version__}"
CPU_IMAGE = f"ghcr.io/cdarts-pipelines/cdarts-cpu:{__version__}"
