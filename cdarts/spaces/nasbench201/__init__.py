"""The NAS-Bench-201 cell space: one four-node cell in the benchmark's ResNet-like skeleton."""
