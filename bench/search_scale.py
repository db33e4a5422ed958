"""Search at scale on this CPU: data-parallel processes, and what a checkpoint costs.

    python bench/search_scale.py

1. The same search steps (proxyless-tiny on digits, global batch 64, an architecture step every 5
   weight steps) in 1 process with 1 thread, 1 process with 2 threads, and 2 gloo processes of
   1 thread each, all started through torchrun's launcher: steps per second and peak resident
   memory per rank, as ratios to the 1-process runs.
2. The checkpoint of a proxyless-tiny and a proxyless-mobile supernet: file size, time to write
   it, and that time as a share of one search epoch on digits (measured for tiny; for mobile,
   the epoch is its measured step time times its steps per epoch).

Prints the load average: figures taken while other jobs share the cores say so.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from latkit.search.checkpoint import Checkpointer
from latkit.search.datasets import Dataset, Split, load_dataset
from latkit.search.distributed import training_session
from latkit.search.latency import LatencyTable
from latkit.search.supernet import SuperNet
from latkit.search.trainer import SearchConfig, SearchTrainer
from latkit.spaces import load_space

GLOBAL_BATCH = 64
WARM, TIMED = 3, 20


TESTS = Path(__file__).resolve().parents[1] / "tests"


def macs_predictor():
    """The tests' stand-in F (`tests/conftest.py`), proportional to MACs: the latency table's
    values do not change the step's cost."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from conftest import MacsPredictor

    return MacsPredictor()


def digits_for(space, steps: int, batch: int) -> Dataset:
    digits = load_dataset("digits", space.input_hw, seed=0)
    n = steps * batch
    repeat = -(-n // len(digits.train))
    x, y = digits.train.x.repeat(repeat, 1, 1, 1)[:n], digits.train.y.repeat(repeat)[:n]
    return Dataset("digits", Split(x, y), digits.val, digits.test, 10)


def trainer_for(space_name: str, steps: int, batch: int, group=None) -> SearchTrainer:
    space = load_space(space_name)
    config = SearchConfig(
        target_ms=1.0, epochs=1, warmup_epochs=0, batch_size=batch, loss="add-linear"
    )
    net = SuperNet(space, "two-path", seed=0)
    if group is not None:
        net = group.sync_batch_norm(net)
    table = LatencyTable.from_predictor(macs_predictor(), space)
    return SearchTrainer(net, table, digits_for(space, steps, batch), config, group=group)


def worker(out: Path) -> None:
    """One rank: WARM + TIMED search steps; writes its steps/s and peak RSS."""
    with training_session("cpu") as session:
        trainer = trainer_for("proxyless-tiny", WARM + TIMED, GLOBAL_BATCH, session.group)
        stamps: list[float] = []
        trainer.run(on_step=lambda: stamps.append(time.perf_counter()))
        rate = TIMED / (stamps[-1] - stamps[WARM - 1])
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        record = {"rank": session.group.rank, "steps_per_s": rate, "peak_mb": peak_mb}
        (out / f"rank{session.group.rank}.json").write_text(json.dumps(record))


def launch(nproc: int, threads: int, out: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc-per-node={nproc}", __file__, "--worker", str(out)]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]


def data_parallel() -> None:
    print(f"1. data-parallel search steps, global batch {GLOBAL_BATCH}, {TIMED} timed steps")
    runs = {}
    for nproc, threads in ((1, 1), (1, 2), (2, 1)):
        with tempfile.TemporaryDirectory() as folder:
            runs[(nproc, threads)] = launch(nproc, threads, Path(folder))
    one = runs[(1, 1)][0]
    for (nproc, threads), ranks in runs.items():
        rate = min(r["steps_per_s"] for r in ranks)  # the group moves at its slowest rank
        peaks = ", ".join(f"{r['peak_mb']:.0f}" for r in ranks)
        print(
            f"   {nproc} process(es) x {threads} thread(s): {rate:.2f} steps/s "
            f"({rate / one['steps_per_s']:.2f}x of 1x1), peak RSS per rank {peaks} MB "
            f"({max(r['peak_mb'] for r in ranks) / one['peak_mb']:.2f}x of 1x1)"
        )
    two, wide = runs[(2, 1)], runs[(1, 2)][0]
    print(
        f"   2 processes vs 1 process on the same 2 threads: "
        f"{min(r['steps_per_s'] for r in two) / wide['steps_per_s']:.2f}x steps/s, "
        f"{max(r['peak_mb'] for r in two) / wide['peak_mb']:.2f}x peak RSS per rank"
    )


def checkpoint_cost() -> None:
    print("2. checkpoint size and cost per epoch (1 thread)")
    torch.set_num_threads(1)
    digits_train = len(load_dataset("digits", 8, seed=0).train)
    for name, batch, measured_steps in (("proxyless-tiny", 32, None), ("proxyless-mobile", 16, 3)):
        per_epoch = digits_train // batch
        steps = per_epoch if measured_steps is None else measured_steps
        trainer = trainer_for(name, steps, batch)
        started = time.perf_counter()
        trainer.run()
        epoch_s = (time.perf_counter() - started) * per_epoch / steps
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = Checkpointer(Path(folder) / "checkpoint.pt", {"bench": name})
            times = []
            for _ in range(3):
                started = time.perf_counter()
                checkpoint.save(trainer)
                times.append(time.perf_counter() - started)
            size = checkpoint.saved_bytes
        save_s = sorted(times)[1]
        how = "measured" if measured_steps is None else f"{steps} steps x {per_epoch}"
        print(
            f"   {name}: checkpoint {size / 2**20:.1f} MiB, written in {save_s * 1000:.0f} ms "
            f"(median of 3); epoch on digits {epoch_s:.1f} s ({how}); "
            f"a checkpoint adds {save_s / epoch_s:.2%} per epoch"
        )


def main() -> None:
    print(f"load average before: {os.getloadavg()} on {os.cpu_count()} cores")
    data_parallel()
    checkpoint_cost()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(Path(sys.argv[2]))
    else:
        main()
