"""The chain-structured (MobileNet-style) space of CDARTS-a/b: one inverted-residual block per layer."""
