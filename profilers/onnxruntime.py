"""onnxruntime profiler: every op exported to ONNX, run with all graph optimisations."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from latkit.devices import DeviceConfig
from latkit.errors import ProfilerUnavailable
from latkit.modules import example_input
from latkit.ops import OpSpec
from latkit.profilers.base import LocalProfiler, ProfilerOptions, host_model
from latkit.profilers.onnx_export import export_onnx
from latkit.profilers.timing import Runner
from latkit.records import Environment


class OnnxRuntimeProfiler(LocalProfiler):
    """CPU by default; `kind: gpu` uses the CUDA execution provider (onnxruntime-gpu)."""

    def __init__(self, device: DeviceConfig, options: ProfilerOptions | None = None) -> None:
        super().__init__(device, options)
        self.providers = ["CPUExecutionProvider"]
        if device.kind == "gpu":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ProfilerUnavailable(
                    "onnxruntime has no CUDAExecutionProvider here; install onnxruntime-gpu "
                    f"(available: {', '.join(ort.get_available_providers())})"
                )
            self.providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def runtime_environment(self) -> Environment:
        return Environment(
            runtime="onnxruntime",
            runtime_version=ort.__version__,
            threads=self.device.threads,
            batch=self.device.batch_size,
            host=host_model(),
            extra={"providers": self.providers[0]},
        )

    def session(self, model: bytes) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.device.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        return ort.InferenceSession(model, options, providers=self.providers)

    def load(self, ops: Sequence[OpSpec]) -> Runner:
        session = self.session(export_onnx(ops))
        x = example_input(ops[0]).numpy().astype(np.float32)
        if self.device.kind != "gpu":
            feed = {"input": x}
            return lambda: session.run(None, feed)
        # Keep input and output on the GPU, so a run times the graph, not host<->device copies.
        binding = session.io_binding()
        binding.bind_ortvalue_input("input", ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        binding.bind_output("output", "cuda")
        return lambda: session.run_with_iobinding(binding)
