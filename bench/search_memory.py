"""Peak memory and time of one search step per binary-gate mode, against a plain network.

Each memory figure comes from a fresh Python process that builds the model, runs one small
warm-up step (so allocator and kernel caches are in place), reads its resident set size, runs
the measured step and reads the peak RSS (`ru_maxrss`). The figure is peak minus the RSS before
the step: the extra memory the step needed. glibc's mmap threshold is pinned to 64 KiB
(MALLOC_MMAP_THRESHOLD_), so every tensor buffer is its own mapping and freed buffers leave the
RSS at once; the RSS then follows live tensors instead of the allocator's free lists.

Steps: `arch` is the architecture step each mode exists for (CE through the gates + the latency
term) as latkit takes it, with the weights frozen; `arch+w` is the same step with the weights left
trainable, as ProxylessNAS's code takes it, which keeps the same activations as a plain training
step and so is the like-for-like comparison; `weights` is the weight step (single and two-path
train one sampled path, all-path the softmax-weighted sum of all). `plain` is a standalone network
of one fixed path (the active candidate of every layer) doing a normal training step.
Seconds per step come from another fresh process with the default allocator (the pinned mmap
threshold costs page faults), as does the share of the arch step spent on the latency term.

    python bench/search_memory.py [--batch 128] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACTIVE = 3  # k5e6 is every layer's active path; two-path's other one is the costliest of the rest


def space_with(candidates: int):
    from latkit.spaces import load_space

    tiny = load_space("proxyless-tiny")
    if candidates == 4:
        return replace(tiny, name="tiny-4", kernels=(3, 5), expands=(3.0, 6.0), zero=False)
    return tiny  # k{3,5,7} x e{3,6}, plus zero where the layer has a skip: 6 or 7


def costliest_other(layer, active: int) -> int:
    others = [i for i in range(len(layer.candidates)) if i != active]
    return max(others, key=lambda i: layer.candidates[i].macs)


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def one(kind: str, step: str, candidates: int, batch: int, steps: int) -> dict:
    """One measured step (peak memory) when `steps` is 0, else seconds per step over `steps`."""
    import contextlib

    import torch
    import torch.nn.functional as F

    import latkit.search.trainer
    from latkit.search.latency import LatencyTable
    from latkit.search.losses import AddLinear
    from latkit.search.supernet import SuperNet, trainable_network
    from latkit.search.trainer import GradientStep, SearchConfig

    torch.set_num_threads(1)
    space = space_with(candidates)
    layers = space.layers()
    active = [min(ACTIVE, len(layer.candidates) - 1) for layer in layers]
    g = torch.Generator().manual_seed(0)

    class Table:  # a fixed F: this bench measures memory, not latency
        overhead_ms = 0.0

        def predict(self, ops):
            import numpy as np

            return np.array([0.0 if op.type == "zero" else 0.01 + op.macs * 1e-8 for op in ops])

    table = LatencyTable.from_predictor(Table(), space)
    config = SearchConfig(target_ms=0.2, mode="two-path" if kind == "plain" else kind)
    if kind == "plain":
        model = trainable_network(space.network(active))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def run(x, y):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    else:
        net = SuperNet(space, kind, seed=0)
        net.train()
        layer_of = {id(op): layer for op, layer in zip(net.mixed, layers)}
        arch_step = GradientStep(net, table, config, AddLinear())
        optimizer = torch.optim.SGD(net.weight_parameters(), lr=0.01, momentum=0.9)

        def place(phase: str) -> None:
            for op, index in zip(net.mixed, active):
                op.phase, op.active = phase, index
                if phase == "arch" and kind == "two-path":
                    other = costliest_other(layer_of[id(op)], index)
                    op.involved = (index, other)
                    op._involved_alpha = op.alpha.detach()[[index, other]].clone()
                elif phase == "arch":
                    op.involved = tuple(range(len(op.candidates)))

        if step == "arch+w":  # ProxylessNAS's arch step: weights stay trainable
            latkit.search.trainer.weights_frozen = lambda net: contextlib.nullcontext()

        def run(x, y):
            if step.startswith("arch"):
                net.sample = lambda phase, generator=None: place(phase)
                arch_step.step(x, y, g)
            else:
                place("weights")
                loss = F.cross_entropy(net(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    def data(n):
        return torch.randn(n, 3, space.input_hw, space.input_hw, generator=g), torch.randint(
            0, 10, (n,), generator=g
        )

    run(*data(2))
    x, y = data(batch)
    if steps == 0:
        before = rss_kib()
        run(x, y)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"peak_mib": (peak - before) / 1024}
    run(x, y)
    started = time.perf_counter()
    for _ in range(steps):
        run(x, y)
    result = {"step_s": (time.perf_counter() - started) / steps}
    if kind != "plain" and step == "arch":
        alphas = net.arch_parameters()
        started = time.perf_counter()
        for _ in range(200):
            for a in alphas:
                a.grad = None
            AddLinear()(torch.tensor(1.0), table.expected(alphas), 0.2).backward()
        result["latency_term_s"] = (time.perf_counter() - started) / 200
    return result


def peak(kind: str, step: str, candidates: int, batch: int) -> float:
    """Peak extra MiB of one step, in a fresh process."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, step, str(candidates), str(batch), "0"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def timing(kind: str, step: str, candidates: int, batch: int, steps: int) -> dict:
    """Seconds per step, in a fresh process with the default allocator."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, step, str(candidates), str(batch), str(steps)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, step, candidates, batch, steps = args.child
        print(json.dumps(one(kind, step, int(candidates), int(batch), int(steps))))
        return

    print(
        f"proxyless-tiny (32x32), batch {args.batch}, 1 torch thread. Peak = extra RSS of one "
        "step, each figure from a fresh process; s/step over "
        f"{args.steps} steps in another fresh process."
    )
    print(
        "steps: arch = latkit's arch step (weights frozen); arch+w = ProxylessNAS's (weights "
        "keep requires_grad, like the plain step); weights = weight step"
    )
    print(
        f"{'candidates':>10} {'mode':>9} {'step':>7} {'peak MiB':>9} {'x plain':>8} {'s/step':>8}"
    )
    rows = {}
    for candidates in (4, 7):
        label = "4" if candidates == 4 else "6-7"
        base = peak("plain", "weights", candidates, args.batch)
        t = timing("plain", "weights", candidates, args.batch, args.steps)
        print(f"{label:>10} {'plain':>9} {'train':>7} {base:9.1f} {1:8.2f} {t['step_s']:8.3f}")
        for kind in ("single", "two-path", "all-path"):
            for step in ("arch", "arch+w", "weights"):
                mib = peak(kind, step, candidates, args.batch)
                t = timing(kind, step, candidates, args.batch, args.steps)
                rows[(candidates, kind, step)] = (mib, mib / base, t)
                print(
                    f"{label:>10} {kind:>9} {step:>7} {mib:9.1f} {mib / base:8.2f} "
                    f"{t['step_s']:8.3f}"
                )
    print()
    for kind in ("single", "two-path", "all-path"):
        small, large = rows[(4, kind, "arch+w")][0], rows[(7, kind, "arch+w")][0]
        t = rows[(7, kind, "arch")][2]
        print(
            f"{kind:>9}: arch+w peak {small:.1f} -> {large:.1f} MiB from 4 to 6-7 candidates "
            f"(x{large / small:.2f}); latency term {1e3 * t['latency_term_s']:.3f} ms = "
            f"{100 * t['latency_term_s'] / t['step_s']:.2f}% of latkit's arch step"
        )
    worst = max(rows[(c, "two-path", "arch+w")][1] for c in (4, 7))
    print(
        f"target two-path <= 1.3x plain (arch+w vs plain train): {worst:.2f}x -> "
        f"{'met' if worst <= 1.3 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
