"""The torch profiler on CPU, and on CUDA where a GPU exists (those tests skip cleanly without)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from latkit.devices import load_device
from latkit.errors import ProfilerUnavailable
from latkit.modules import build_network, example_input
from latkit.ops import OpSpec
from latkit.profilers import get_profiler
from latkit.profilers.session import profile_ops
from latkit.spaces import load_space
from latkit.store import MeasurementStore
from tests.conftest import ROOT, write_device

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
OP = OpSpec("mbconv", 28, 40, 40, kernel=5, expand=6, skip=True)


def gpu_device(tmp_path, **gpu):
    return load_device(
        write_device(
            tmp_path / "gpu.yaml",
            name="gpu",
            kind="gpu",
            runtime="torch",
            batch_size=8,
            timing={"warmup": 5, "runs": 10, "rounds": 2, "max_cv": 0.5},
            gpu=gpu,
        )
    )


def test_cpu_torch_profiler_times_real_ops(tmp_path):
    profiler = get_profiler(load_device(write_device(tmp_path / "d.yaml", runtime="torch")))
    env = profiler.environment()
    assert env.runtime == "torch" and env.runtime_version == torch.__version__
    result = profiler.measure_network(load_space("proxyless-tiny").network([0] * 6))
    assert result.stats.runs == 10 and result.stats.median_ms > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_no_gpu_is_one_clear_line(tmp_path):
    with pytest.raises(ProfilerUnavailable, match=r"no GPU visible: torch.cuda.is_available\(\)"):
        get_profiler(gpu_device(tmp_path))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from latkit.cli import main; main()",
            "profile",
            "--device",
            str(ROOT / "device_configs/cuda-gpu8.yaml"),
            "--db",
            str(tmp_path / "s.sqlite"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no GPU visible" in proc.stderr and torch.__version__ in proc.stderr


def test_gpu_path_never_imports_android_or_litert_modules():
    code = (
        "import sys\n"
        "for name in ('adb_shell', 'ai_edge_litert'):\n"
        "    sys.modules[name] = None  # as on a bare GPU machine: importing them fails\n"
        "from latkit.cli import app\n"
        "from latkit.devices import load_device\n"
        "import latkit.profilers, latkit.profilers.torch, latkit.profilers.session\n"
        "from typer.testing import CliRunner\n"
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
        "loaded = [m for m in sys.modules if m.startswith('latkit.profilers.android')]\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


@cuda
@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "cuda-graphs"])
def test_cuda_profile_events_and_graphs(tmp_path, graphs):
    device = gpu_device(tmp_path, cuda_graphs=graphs)
    profiler = get_profiler(device)
    env = profiler.environment()
    assert env.device_model == torch.cuda.get_device_name(0)
    assert env.extra["cuda"] == torch.version.cuda and env.batch == 8
    ops = load_space("proxyless-mobile").distinct_ops()[:4]
    with MeasurementStore(tmp_path / "s.sqlite") as store:
        summary = profile_ops(profiler, ops, store)
        frame = store.dataframe("gpu")
    assert summary.measured == 4 and (frame["batch"] == 8).all()
    assert (frame["median_ms"] > 0).all()


@cuda
def test_cuda_graph_replay_computes_the_same_output(tmp_path):
    profiler = get_profiler(gpu_device(tmp_path, cuda_graphs=True))
    run = profiler.load([OP.replace(batch=8)])
    out = run()
    torch.cuda.synchronize()
    ref = build_network([OP.replace(batch=8)])(example_input(OP.replace(batch=8)))
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-3, atol=1e-3)


@cuda
def test_cuda_event_clock_waits_for_the_kernel():
    from latkit.profilers.torch import CudaEventClock

    clock = CudaEventClock(torch.device("cuda"))
    a = torch.randn(4096, 4096, device="cuda")
    token = clock.start()
    for _ in range(10):
        a = a @ a / 4096
    elapsed = clock.stop(token)
    assert torch.cuda.current_stream().query()  # stop() returned only after the work finished
    assert elapsed > 0
