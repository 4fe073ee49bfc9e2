"""Blocks and types more than one space builds on (heads, drop-path, the joint-model base)."""
