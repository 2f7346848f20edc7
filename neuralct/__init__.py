"""neuralct: slow collective variables from neural canonical transformations."""

from .model import NeuralCanonicalTransformation, load

__version__ = "0.1.0"

__all__ = ["NeuralCanonicalTransformation", "load", "__version__"]
