"""Profilers: one module per runtime/device kind, found by name through `get_profiler`.

Modules are imported lazily, so the GPU path never imports Android-only code and vice versa.
"""

from __future__ import annotations

import importlib

from latkit.devices import DeviceConfig
from latkit.errors import ProfilerUnavailable
from profilers.base import MeasuredOp, Profiler

# (kind, runtime) -> "module:Class"
REGISTRY: dict[tuple[str, str], str] = {
    ("cpu", "onnxruntime"): "profilers.onnxruntime:OnnxRuntimeProfiler",
    ("gpu", "onnxruntime"): "profilers.onnxruntime:OnnxRuntimeProfiler",
    ("cpu", "torch"): "profilers.torch:TorchProfiler",
    ("gpu", "torch"): "profilers.torch:TorchProfiler",
    ("cpu", "litert"): "profilers.litert:LiteRTProfiler",
    ("android", "litert"): "profilers.android.profiler:AndroidProfiler",
}


def get_profiler(device: DeviceConfig) -> Profiler:
    """The profiler for a device file's kind and runtime, ready to measure."""
    target = REGISTRY.get((device.kind, device.runtime))
    if target is None:
        raise ProfilerUnavailable(
            f"no profiler for kind {device.kind} with runtime {device.runtime}"
        )
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ProfilerUnavailable(
            f"the {device.runtime} profiler needs the Python package {exc.name!r}; install it"
        ) from None
    return getattr(module, class_name)(device)


__all__ = ["REGISTRY", "MeasuredOp", "Profiler", "get_profiler"]
