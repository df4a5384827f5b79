"""jaxgen: JAX/Flax research code for image generative models."""

__version__ = "0.1.0"
