"""torch eager profiler: CPU (`set_num_threads`, `inference_mode`) and CUDA (events, graphs)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from latkit.devices import DeviceConfig
from latkit.errors import ProfilerUnavailable
from latkit.modules import build_network, example_input
from latkit.ops import OpSpec
from latkit.profilers.base import LocalProfiler, ProfilerOptions, host_model
from latkit.profilers.timing import Clock, HostClock, Runner
from latkit.records import Environment

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class CudaEventClock:
    """CUDA events around each call; `stop` waits for the end event before reading it."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def start(self) -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def stop(self, token: object) -> float:
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        end.synchronize()
        return float(token.elapsed_time(end))  # type: ignore[attr-defined]


def cuda_unavailable_reason() -> str | None:
    """Why CUDA can't be used here, in words a user can act on; None when it can."""
    if torch.cuda.is_available():
        return None
    build = f"torch {torch.__version__}" + (
        f" built for CUDA {torch.version.cuda}" if torch.version.cuda else " (a CPU-only build)"
    )
    return f"no GPU visible: torch.cuda.is_available() is False with {build}"


class TorchProfiler(LocalProfiler):
    def __init__(self, device: DeviceConfig, options: ProfilerOptions | None = None) -> None:
        super().__init__(device, options)
        self.gpu = device.kind == "gpu"
        self._restore = (torch.get_num_threads(), torch.backends.cudnn.benchmark)
        torch.set_num_threads(device.threads)
        if self.gpu:
            reason = cuda_unavailable_reason()
            if reason:
                raise ProfilerUnavailable(reason)
            settings = device.gpu_settings
            self.torch_device = torch.device(settings.device)
            self.dtype = DTYPES[settings.dtype]
            torch.backends.cudnn.benchmark = settings.cudnn_benchmark
        else:
            self.torch_device = torch.device("cpu")
            self.dtype = torch.float32

    @property
    def clock(self) -> Clock:
        return CudaEventClock(self.torch_device) if self.gpu else HostClock()

    def close(self) -> None:
        """Give torch back the thread count and cuDNN setting it had: the caller may train next
        (a search times its result, then trains it)."""
        threads, benchmark = self._restore
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = benchmark

    def runtime_environment(self) -> Environment:
        extra: dict[str, object] = {}
        info: dict[str, object] = {}
        model = host_model()
        if self.gpu:
            s = self.device.gpu_settings
            props = torch.cuda.get_device_properties(self.torch_device)
            model = props.name
            extra = {
                "dtype": s.dtype,
                "channels_last": s.channels_last,
                "cuda_graphs": s.cuda_graphs,
                "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(),
            }
            info = gpu_clocks()
        return Environment(
            runtime="torch",
            runtime_version=torch.__version__,
            threads=self.device.threads,
            batch=self.device.batch_size,
            host=host_model(),
            device_model=model,
            extra=extra,
            info=info,
        )

    def load(self, ops: Sequence[OpSpec]) -> Runner:
        model = build_network(ops).to(self.torch_device, self.dtype)
        x = example_input(ops[0]).to(self.torch_device, self.dtype)
        if self.gpu and self.device.gpu_settings.channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        if self.gpu and self.device.gpu_settings.cuda_graphs:
            return _graphed(model, x)

        def run() -> torch.Tensor:
            with torch.inference_mode():
                return model(x)

        return run


def _graphed(model: torch.nn.Module, x: torch.Tensor) -> Runner:
    """Capture one forward pass as a CUDA graph; replaying it removes launch overhead."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        output = model(x)

    def replay() -> torch.Tensor:
        graph.replay()
        return output

    return replay


def gpu_clocks() -> dict[str, object]:
    """Driver version and SM/memory clocks via NVML, where readable."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        return {
            "driver": pynvml.nvmlSystemGetDriverVersion(),
            "sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "mem_clock_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM),
        }
    except Exception:  # NVML missing or unreadable: the clocks are optional context
        return {}
