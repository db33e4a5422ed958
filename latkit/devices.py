"""Device files: one YAML file per target, validated by pydantic, with one-line errors.

A device file names the measurements and the predictor (`name`), says which profiler runs
(`kind` + `runtime`) and how it times (`timing`). A wrong file never produces a traceback: the
message names the file, the field and what is allowed.
"""

from __future__ import annotations

import posixpath
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from latkit.errors import DeviceFileError
from latkit.files import read_yaml
from latkit.registry import Registry

#: the profiler class of every (kind, runtime) a device file may name, imported on first use so
#: the GPU path never loads Android code; a new runtime plugs in with one line here
PROFILERS: Registry = Registry("profiler")
PROFILERS.register(("cpu", "onnxruntime"), "latkit.profilers.onnxruntime:OnnxRuntimeProfiler")
PROFILERS.register(("cpu", "torch"), "latkit.profilers.torch:TorchProfiler")
PROFILERS.register(("cpu", "litert"), "latkit.profilers.litert:LiteRTProfiler")
PROFILERS.register(("cpu", "litert-builtin"), "latkit.profilers.litert:LiteRTBuiltinProfiler")
PROFILERS.register(("gpu", "torch"), "latkit.profilers.torch:TorchProfiler")
PROFILERS.register(("gpu", "onnxruntime"), "latkit.profilers.onnxruntime:OnnxRuntimeProfiler")
PROFILERS.register(("android", "litert"), "latkit.profilers.android.profiler:AndroidProfiler")


def runtimes(kind: str) -> tuple[str, ...]:
    """The runtimes a device of `kind` may use: those with a registered profiler."""
    return tuple(runtime for k, runtime in PROFILERS.names() if k == kind)


SAFE_REMOTE_ROOTS = ("/data/local/tmp", "/sdcard")
#: the largest batch an op is built and timed with (a batch's input is allocated at once)
MAX_BATCH = 4_096
#: timed samples one op may take at worst (runs x rounds x (1 + max_retries)): past this a
#: profile runs for days on a single op, which is a typo, not a plan
MAX_SAMPLES_PER_OP = 1_000_000


class _Strict(BaseModel):
    """Every section: unknown fields and NaN or infinite numbers are refused, never guessed at."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Timing(_Strict):
    """How every op is timed: `warmup` untimed and `runs` timed samples in an op's first round,
    `rewarm` untimed samples before each later one (the op stays loaded, only caches need
    refilling), `rounds` rounds interleaved across ops, and up to `max_retries` times `rounds` more
    rounds for an op whose rounds' CV exceeds `max_cv`. A sample is one call, or, for microsecond
    ops (a call under a hundredth of `min_block_ms`), a block of calls lasting at least `min_block_ms`
    (0: always one call). The plan is part of every row's environment fingerprint, so rows timed
    differently never mix."""

    warmup: int = Field(10, ge=0, le=10_000)
    runs: int = Field(50, ge=1, le=100_000)
    rounds: int = Field(3, ge=1, le=100)
    #: above 1 it never triggers a retry: the way to say "never" (max_retries 0 is the other)
    max_cv: float = Field(0.05, gt=0, le=10)
    max_retries: int = Field(2, ge=0, le=20)
    rewarm: int = Field(3, ge=0, le=10_000)
    min_block_ms: float = Field(1.0, ge=0, le=1_000)

    @model_validator(mode="after")
    def _check(self) -> Timing:
        worst = self.runs * self.rounds * (1 + self.max_retries)
        if worst > MAX_SAMPLES_PER_OP:
            raise ValueError(
                f"runs x rounds x (1 + max_retries) = {worst} timed samples per op; "
                f"at most {MAX_SAMPLES_PER_OP}"
            )
        return self


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
    max_temperature_c: float = Field(45.0, ge=20, le=100)
    cooldown_s: float = Field(60.0, ge=0, le=3_600)
    batch_push: int = Field(8, ge=1, le=1_000)

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

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    kind: Literal["cpu", "gpu", "android"]
    runtime: str
    batch_size: int = Field(1, ge=1, le=MAX_BATCH)
    threads: int = Field(1, ge=1, le=1_024)
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


_BOUNDS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model of a nested section (`AndroidSettings | None` -> AndroidSettings), if any."""
    if get_origin(annotation) in (Union, types.UnionType):
        return next(filter(None, map(_section, get_args(annotation))), None)
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _field(loc: tuple[Any, ...]) -> FieldInfo | None:
    """The schema of the field at `loc` (`("timing", "runs")`), or None for a whole section."""
    model: type[BaseModel] | None = DeviceConfig
    field = None
    for part in loc:
        if model is None or part not in model.model_fields:
            return None
        field = model.model_fields[part]
        model = _section(field.annotation)
    return field


def _allowed(loc: tuple[Any, ...]) -> str | None:
    """The range a numeric field allows, in words (`1 to 4096`, `above 0 and at most 10`), read
    from the schema itself so a message can never quote a stale limit."""
    field = _field(loc)
    if field is None:
        return None
    bounds = {
        name: getattr(m, name)
        for m in field.metadata
        for name in ("ge", "gt", "le", "lt")
        if hasattr(m, name)
    }
    if "ge" in bounds and "le" in bounds:
        return f"{bounds['ge']:g} to {bounds['le']:g}"
    words = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}
    parts = [f"{words[name]} {value:g}" for name, value in bounds.items()]
    return " and ".join(parts) or None


def _describe(error: dict) -> str:
    parts = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
    loc = ".".join(str(part) for part in parts)
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
    limits, got = _allowed(parts), _shown(error.get("input"))
    if kind in _BOUNDS and limits:
        return f"field {loc!r}: {got} is out of range (allowed: {limits})"
    if kind == "finite_number" and limits:
        return f"field {loc!r}: {got} is not a finite number (allowed: {limits})"
    tail = f"; allowed: {limits}" if limits else ""
    return f"field {loc!r}: {msg} (got {got}{tail})"


def _shown(value: object, width: int = 40) -> str:
    """A wrong value as a message quotes it: its repr, cut short so the message stays one line."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def parse_device(data: object, source: str = "<device>") -> DeviceConfig:
    if not isinstance(data, dict):
        raise DeviceFileError(f"{source}: a device file must be a YAML mapping of fields")
    try:
        return DeviceConfig(**data, source=source)
    except ValidationError as exc:
        raise DeviceFileError(f"{source}: {_describe(exc.errors()[0])}") from None
    except TypeError as exc:
        raise DeviceFileError(f"{source}: {exc}") from None


def is_device_file(value: str | Path) -> bool:
    """Whether a --device value names a device file (a .yaml or .yml path, or any file) rather
    than a device by name; a value no path can be (too long) is a name."""
    path = Path(value)
    if path.suffix in (".yaml", ".yml"):
        return True
    try:
        return path.is_file()
    except OSError:
        return False


def device_name(device: DeviceConfig | str) -> str:
    """The name of a device given as a device file's config or, for imported data, by name."""
    return device if isinstance(device, str) else device.name


def load_device(path: str | Path) -> DeviceConfig:
    """Read and validate a device file; every failure is one DeviceFileError line."""
    return parse_device(read_yaml(path, "device file", DeviceFileError), str(path))
