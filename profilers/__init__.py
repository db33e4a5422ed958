"""Profilers: one module per runtime or device kind, created by `get_profiler` from a device file.

The (kind, runtime) -> class table is `latkit.devices.PROFILERS`, the same table the device-file
schema checks against; modules are imported only when a device file names them.
"""

from __future__ import annotations

from latkit.devices import PROFILERS, DeviceConfig
from latkit.errors import ProfilerUnavailable
from latkit.profilers.base import LocalProfiler, MeasuredOp, Profiler, ProfilerOptions


def get_profiler(device: DeviceConfig, options: ProfilerOptions | None = None) -> Profiler:
    """The profiler for a device file's kind and runtime, ready to measure."""
    key = (device.kind, device.runtime)
    if key not in PROFILERS:
        raise ProfilerUnavailable(
            f"no profiler for kind {device.kind} with runtime {device.runtime}"
        )
    try:
        cls = PROFILERS.get(key)
    except ModuleNotFoundError as exc:
        raise ProfilerUnavailable(
            f"the {device.runtime} profiler needs the Python package {exc.name!r}; install it"
        ) from None
    return cls(device, options)


__all__ = ["LocalProfiler", "MeasuredOp", "Profiler", "ProfilerOptions", "get_profiler"]
