"""Flax linen modules. Models hold no losses or optimizers."""
