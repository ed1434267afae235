"""Looking inside recurrent networks: gradient flow through time, Jacobian spectra, gate saturation,
hidden-state geometry and per-unit activations (:mod:`.core`), drawn as PNGs (:mod:`.plots`)."""

from .core import Trace, gate_statistics, gradient_flow, jacobian_spectrum, pca, trace

__all__ = ["Trace", "gate_statistics", "gradient_flow", "jacobian_spectrum", "pca", "trace"]
