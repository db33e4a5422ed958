"""LiteRT profiler for the host CPU: each op written as `.tflite` and run with XNNPACK (or,
`litert-builtin`, with LiteRT's own kernels).

This is the runtime Android phones and ARM boards use, so host timings here are the closest a
desktop gets to theirs, and the files are byte-for-byte what `latkit export` hands to
`benchmark_model`.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from latkit.devices import DeviceConfig
from latkit.errors import ProfilerUnavailable
from latkit.modules import example_input
from latkit.ops import OpSpec
from latkit.profilers.base import LocalProfiler, ProfilerOptions, host_model
from latkit.profilers.tflite_writer import export_tflite
from latkit.profilers.timing import Runner
from latkit.records import Environment

#: optimized builtin kernels plus LiteRT's default delegate (XNNPACK on CPU)
RESOLVER = OpResolverType.BUILTIN
DELEGATE_NODE = "DELEGATE"
PROBE = OpSpec("conv", 8, 3, 8, kernel=3)


def make_interpreter(model: bytes, threads: int = 1, resolver=RESOLVER) -> Interpreter:
    """An interpreter with its tensors allocated, i.e. with the default delegate applied."""
    interpreter = Interpreter(
        model_content=model, num_threads=threads, experimental_op_resolver_type=resolver
    )
    interpreter.allocate_tensors()
    return interpreter


def delegated(interpreter: Interpreter) -> bool:
    """Whether a delegate (XNNPACK on CPU) took over part of the graph: it adds a DELEGATE node."""
    return any(op["op_name"] == DELEGATE_NODE for op in interpreter._get_ops_details())


def set_input(interpreter: Interpreter, x_nchw: np.ndarray) -> None:
    """Feed an NCHW (torch-layout) array to the NHWC model input."""
    x = np.asarray(x_nchw, dtype=np.float32)
    if x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.ascontiguousarray(x))


def run_tflite(
    model_bytes: bytes, x_nchw: np.ndarray, threads: int = 1, resolver=RESOLVER
) -> np.ndarray:
    """Run a latkit `.tflite` file once on an NCHW input; the output comes back in torch layout
    (NCHW for feature maps, 2-D after a linear), ready to compare with the torch module."""
    interpreter = make_interpreter(model_bytes, threads, resolver)
    set_input(interpreter, x_nchw)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return out.transpose(0, 3, 1, 2) if out.ndim == 4 else out


class LiteRTProfiler(LocalProfiler):
    """`kind: cpu`, `runtime: litert`: LiteRT's interpreter with XNNPACK and the file's threads."""

    resolver = RESOLVER
    delegate = "xnnpack"

    def __init__(self, device: DeviceConfig, options: ProfilerOptions | None = None) -> None:
        super().__init__(device, options)
        self.version = importlib.metadata.version("ai-edge-litert")
        probe = make_interpreter(export_tflite([PROBE]), device.threads, self.resolver)
        if delegated(probe) != (self.delegate != "none"):
            raise ProfilerUnavailable(
                f"ai-edge-litert {self.version} did not run a conv with delegate "
                f"{self.delegate!r}; timings would be of another code path. Reinstall ai-edge-litert"
            )

    def runtime_environment(self) -> Environment:
        return Environment(
            runtime="litert",
            runtime_version=self.version,
            threads=self.device.threads,
            batch=self.device.batch_size,
            host=host_model(),
            extra={"delegate": self.delegate},
        )

    def load(self, ops: Sequence[OpSpec]) -> Runner:
        interpreter = make_interpreter(export_tflite(ops), self.device.threads, self.resolver)
        set_input(interpreter, example_input(ops[0]).numpy())
        return interpreter.invoke


class LiteRTBuiltinProfiler(LiteRTProfiler):
    """`runtime: litert-builtin`: LiteRT's own optimized kernels, no delegate, as a phone runs
    the file with `benchmark_model --use_xnnpack=false`. Its trade-offs differ from XNNPACK's
    (depthwise and 1x1 convolutions above all), which makes it a device of its own."""

    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    delegate = "none"
