"""Device files: one YAML file per target, validated by pydantic, with one-line errors.

A device file names the measurements and the predictor (`name`), says which profiler runs
(`kind` + `runtime`) and how it times (`timing`). A wrong file never produces a traceback: the
message names the file, the field and what is allowed.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from latkit.errors import DeviceFileError
from latkit.files import read_yaml
from latkit.registry import Registry

#: the profiler class of every (kind, runtime) a device file may name, imported on first use so
#: the GPU path never loads Android code; a new runtime plugs in with one line here
PROFILERS: Registry = Registry("profiler")
PROFILERS.register(("cpu", "onnxruntime"), "latkit.profilers.onnxruntime:OnnxRuntimeProfiler")
PROFILERS.register(("cpu", "torch"), "latkit.profilers.torch:TorchProfiler")
PROFILERS.register(("cpu", "litert"), "latkit.profilers.litert:LiteRTProfiler")
PROFILERS.register(("gpu", "torch"), "latkit.profilers.torch:TorchProfiler")
PROFILERS.register(("gpu", "onnxruntime"), "latkit.profilers.onnxruntime:OnnxRuntimeProfiler")
PROFILERS.register(("android", "litert"), "latkit.profilers.android.profiler:AndroidProfiler")


def runtimes(kind: str) -> tuple[str, ...]:
    """The runtimes a device of `kind` may use: those with a registered profiler."""
    return tuple(runtime for k, runtime in PROFILERS.names() if k == kind)


SAFE_REMOTE_ROOTS = ("/data/local/tmp", "/sdcard")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timing(_Strict):
    """How every op is timed: `warmup` untimed and `runs` timed samples in an op's first round,
    `rewarm` untimed samples before each later one (the op stays loaded, only caches need
    refilling), `rounds` rounds interleaved across ops, and up to `max_retries` times `rounds` more
    rounds for an op whose rounds' CV exceeds `max_cv`. A sample is one call, or, for microsecond
    ops (a call under a hundredth of `min_block_ms`), a block of calls lasting at least `min_block_ms`
    (0: always one call). The plan is part of every row's environment fingerprint, so rows timed
    differently never mix."""

    warmup: int = Field(10, ge=0)
    runs: int = Field(50, ge=1)
    rounds: int = Field(3, ge=1)
    max_cv: float = Field(0.05, gt=0)
    max_retries: int = Field(2, ge=0)
    rewarm: int = Field(3, ge=0)
    min_block_ms: float = Field(1.0, ge=0)


class AndroidSettings(_Strict):
    transport: Literal["usb", "tcp", "adb-server"] = "usb"
    serial: str | None = None
    host: str | None = None
    port: int = Field(5555, ge=1, le=65535)
    adb_key: str = "~/.android/adbkey"
    adb_server: str = "127.0.0.1:5037"
    remote_dir: str = "/data/local/tmp/latkit"
    benchmark_model: str | None = None
    cpu_affinity: str | None = "f0"
    delegate: Literal["cpu", "gpu", "nnapi"] = "cpu"
    max_temperature_c: float = 45.0
    cooldown_s: float = Field(60.0, ge=0)
    batch_push: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _check(self) -> AndroidSettings:
        if self.transport == "tcp" and not self.host:
            raise ValueError("transport tcp needs host (and port)")
        remote = posixpath.normpath(self.remote_dir)
        if not remote.startswith("/") or not any(
            remote == root or remote.startswith(root + "/") for root in SAFE_REMOTE_ROOTS
        ):
            raise ValueError(
                f"remote_dir {self.remote_dir!r} must be inside {' or '.join(SAFE_REMOTE_ROOTS)}"
            )
        if self.cpu_affinity is not None and not all(
            c in "0123456789abcdefABCDEF" for c in self.cpu_affinity
        ):
            raise ValueError(f"cpu_affinity {self.cpu_affinity!r} must be a hex taskset mask")
        return self


class GpuSettings(_Strict):
    device: str = "cuda:0"
    cuda_graphs: bool = False
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    channels_last: bool = False
    cudnn_benchmark: bool = True


class DeviceConfig(_Strict):
    """A device file, plus `source`: the file it came from (not part of the YAML)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    kind: Literal["cpu", "gpu", "android"]
    runtime: str
    batch_size: int = Field(1, ge=1)
    threads: int = Field(1, ge=1)
    timing: Timing = Timing()
    android: AndroidSettings | None = None
    gpu: GpuSettings | None = None
    source: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _check(self) -> DeviceConfig:
        allowed = runtimes(self.kind)
        if self.runtime not in allowed:
            raise ValueError(
                f"runtime {self.runtime!r} is not allowed for kind {self.kind}; "
                f"use one of {', '.join(allowed)}"
            )
        if self.kind == "android" and self.android is None:
            raise ValueError("kind android needs an `android:` section")
        if self.kind != "android" and self.android is not None:
            raise ValueError(f"an `android:` section needs kind android, not {self.kind}")
        if self.kind != "gpu" and self.gpu is not None:
            raise ValueError(f"a `gpu:` section needs kind gpu, not {self.kind}")
        return self

    @property
    def gpu_settings(self) -> GpuSettings:
        return self.gpu or GpuSettings()


def _describe(error: dict) -> str:
    loc = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
    kind, msg = error["type"], error["msg"]
    if kind == "missing":
        return f"field {loc!r} is missing"
    if kind == "extra_forbidden":
        return f"field {loc!r} is not part of the schema"
    if kind == "literal_error":
        return f"field {loc!r}: {error['input']!r} is not allowed ({msg.removeprefix('Input ')})"
    if kind == "value_error":
        where = f"field {loc!r}: " if loc else ""
        return where + msg.removeprefix("Value error, ")
    return f"field {loc!r}: {msg} (got {error.get('input')!r})"


def parse_device(data: object, source: str = "<device>") -> DeviceConfig:
    if not isinstance(data, dict):
        raise DeviceFileError(f"{source}: a device file must be a YAML mapping of fields")
    try:
        return DeviceConfig(**data, source=source)
    except ValidationError as exc:
        raise DeviceFileError(f"{source}: {_describe(exc.errors()[0])}") from None
    except TypeError as exc:
        raise DeviceFileError(f"{source}: {exc}") from None


def load_device(path: str | Path) -> DeviceConfig:
    """Read and validate a device file; every failure is one DeviceFileError line."""
    return parse_device(read_yaml(path, "device file", DeviceFileError), str(path))
