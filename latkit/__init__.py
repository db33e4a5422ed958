"""latkit: measure op latency on real hardware, fit a latency predictor, search against it.

`latkit.load_predictor(device)` is imported on first use (`__getattr__`), so that `import latkit`
stays light: no torch, no onnx, until F is asked for.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_predictor"]


def __getattr__(name: str) -> Any:
    if name == "load_predictor":
        from latkit.workflows.api import load_predictor

        return load_predictor
    raise AttributeError(f"module 'latkit' has no attribute {name!r}")
