"""latkit: measure op latency on real hardware, fit a latency predictor, search against it."""

__version__ = "0.1.0"
