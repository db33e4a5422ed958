"""A new device in minutes? Few-shot F from the other devices in the store, left out one at a time.

    python bench/fewshot.py [--quick] [--db PATH] [--out DIR] [--parts local,phone]

Devices are (runtime, threads, batch) settings of this CPU, plus the ProxylessNAS phone table
(imported, so its "timings" are the table's sums). Each is left out in turn as the new device;
the others are the store. For N = 5, 10, 20, 50 timed networks of the new device, chosen by
`pick_networks`, it prints Spearman, ±10% and interval coverage on held-out random networks for

- (a) F from the N networks alone (`latkit fit --networks`),
- (b) today's `--prior`: F = scale x one other device's F + corrections (the best prior of the
  store, chosen on the held-out networks themselves: an optimistic baseline),
- (c) transfer from every other device (`latkit fit --transfer`),
- (d) the full op profile with its calibration networks (`latkit profile` + `latkit fit`),

then (c) at N = 10 from chosen networks against random draws of 10.

local: proxyless-tiny on onnxruntime 1 and 2 threads, torch eager, LiteRT with XNNPACK,
onnxruntime at batch 8 and LiteRT with its builtin kernels; every device's networks are timed
here (200 held out, 50 to draw random picks from, 50 picked), in one shuffled pass so that the
machine's drift is no bias. phone: proxyless-mobile; the phone table left out, the sources are
this CPU's first four runtimes profiled on proxyless-mobile (ops and calibration networks).
wall: the wall time of `latkit profile --networks 10` against the full `latkit profile` on the
emulated phone.

Every network the bench times itself is stored with origin `validate`, so no device's fit sees
them. The store is a temporary file unless --db is given (then timings are reused on a rerun).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from android_emulated import emulated_phone
from predictor_accuracy import TRIM, bar, load_note, network_metrics, time_networks

from latkit.cli.output import RichReporter
from latkit.devices import DeviceConfig, Timing
from latkit.metrics import coverage, report
from latkit.predictors import LatencyPredictor, fit_device, fit_networks
from latkit.predictors.lut import read_lut
from latkit.predictors.transfer import Source, fit_transfer, pick_networks
from latkit.profilers import get_profiler
from latkit.profilers.base import host_model
from latkit.spaces import Network, SearchSpace, load_space
from latkit.store import MeasurementStore
from latkit.workflows.profile import profile_space

SHOTS = (5, 10, 20, 50)
HELD_OUT, RANDOM_POOL, RANDOM_DRAWS = 200, 50, 10
TEST_SEED, PICK_SEED = 7, 11
Sample = tuple[tuple, float]


def cpu(name: str, runtime: str, threads: int = 1, batch: int = 1) -> DeviceConfig:
    timing = Timing(warmup=10, runs=50, rounds=3, max_cv=0.05)
    return DeviceConfig(
        name=name, kind="cpu", runtime=runtime, threads=threads, batch_size=batch, timing=timing
    )


DEVICES = (
    cpu("ort-1t", "onnxruntime"),
    cpu("ort-2t", "onnxruntime", threads=2),
    cpu("torch-1t", "torch"),
    cpu("litert-1t", "litert"),
    cpu("ort-1t-b8", "onnxruntime", batch=8),
    cpu("litert-builtin", "litert-builtin"),
)


@dataclass
class Device:
    """One device of the bench: its F from the full profile, and the networks timed on it."""

    config: DeviceConfig | None
    space: SearchSpace
    full: LatencyPredictor
    test: list[Sample]
    random_pool: list[Sample]

    @property
    def batch(self) -> int:
        return 1 if self.config is None else self.config.batch_size


def profile(config: DeviceConfig, space: SearchSpace, store: MeasurementStore, out: Path):
    """The full profile (ops + calibration networks, resumable) and its F."""
    started = time.perf_counter()
    with bar() as progress:
        summary = profile_space(
            config, space, store, reporter=RichReporter(progress), raw_dir=out / "raw"
        )
    print(
        f"  {config.name}: {summary.ops} ops ({summary.measured} timed now, median CV "
        f"{summary.median_cv:.2%}) and calibration networks in {time.perf_counter() - started:.0f} s"
    )
    return fit_device(store, config.name, seed=0, data_dir=out).predictor


def timed(config: DeviceConfig, store: MeasurementStore, networks: Sequence[Network], label: str):
    profiler = get_profiler(config)
    try:
        return time_networks(profiler, store, networks, f"{label} on {config.name}", "validate")
    finally:
        profiler.close()


def metrics_on(predict, test: list[Sample]) -> dict[str, float]:
    """Spearman, ±10% and coverage of a callable returning (pred, low, high) per network."""
    answers = [predict(ops) for ops, _ in test]
    truth = [t for _, t in test]
    out = report([a[0] for a in answers], truth)
    out["coverage"] = coverage([a[1] for a in answers], [a[2] for a in answers], truth)
    return out


def answer(predictor: LatencyPredictor):
    def one(ops):
        a = predictor.network_answer(ops)
        return a.predicted_ms, a.low_ms, a.high_ms

    return one


def cells(m: dict[str, float] | None) -> str:
    if m is None:
        return f"{'-':>8} {'-':>7} {'-':>7}"
    return f"{m['spearman']:>8.3f} {m['acc10']:>7.1%} {m['coverage']:>7.1%}"


def best_prior(train: list[Sample], sources: list[Source], test: list[Sample]) -> tuple[str, dict]:
    """Today's `--prior` with each source, the best on the held-out networks (optimistic)."""
    scored = []
    for s in sources:
        fitted, _ = fit_networks(train, test_fraction=0.0, seed=0, base=s.predictor)
        scored.append((s.name, network_metrics(fitted, test)))
    return max(scored, key=lambda item: (item[1]["acc10"], item[1]["spearman"]))


def transfer_metrics(train: list[Sample], sources: list[Source], target: Device):
    predictor, rep = fit_transfer(train, sources, space=target.space, seed=0)
    return metrics_on(answer(predictor), target.test), rep


def leave_out(name: str, target: Device, sources: list[Source], picked: list[Sample]) -> None:
    """The table of one left-out device: (a)-(d) at every N, then chosen vs random at N = 10."""
    print(f"\n  left out: {name} (batch {target.batch}); sources: {[s.name for s in sources]}")
    print(f"  {'N':>3}  {'(a) alone':>24}  {'(b) best --prior':>24}  {'(c) transfer':>24}")
    print(f"  {'':>3}  " + "  ".join([f"{'Spearman':>8} {'±10%':>7} {'cover':>7}"] * 3))
    for n in SHOTS:
        train = picked[:n]
        alone = network_metrics(fit_networks(train, test_fraction=0.0, seed=0)[0], target.test)
        prior_name, prior = best_prior(train, sources, target.test)
        ours, rep = transfer_metrics(train, sources, target)
        print(f"  {n:>3}  {cells(alone)}  {cells(prior)}  {cells(ours)}")
        print(
            f"       (b) prior {prior_name}; (c) {rep.model}, shares "
            + ", ".join(f"{k} {v:.0%}" for k, v in rep.shares.items())
            + f"; its leave-one-out ±10% {rep.held_out.get('acc10', float('nan')):.0%}"
        )
    print(f"  (d) full op profile: {cells(network_metrics(target.full, target.test))}")
    draws = random_draws(target, sources)
    chosen, _ = transfer_metrics(picked[:10], sources, target)
    print(
        f"  N = 10, chosen: Spearman {chosen['spearman']:.3f}, ±10% {chosen['acc10']:.1%}; "
        f"random ({RANDOM_DRAWS} draws): Spearman mean {np.mean(draws[0]):.3f} "
        f"(worst {min(draws[0]):.3f}), ±10% mean {np.mean(draws[1]):.1%} (worst {min(draws[1]):.1%})"
    )


def random_draws(target: Device, sources: list[Source]) -> tuple[list[float], list[float]]:
    rng = random.Random(PICK_SEED)
    spearman, acc10 = [], []
    for _ in range(RANDOM_DRAWS):
        m, _ = transfer_metrics(rng.sample(target.random_pool, 10), sources, target)
        spearman.append(m["spearman"])
        acc10.append(m["acc10"])
    return spearman, acc10


def time_interleaved(
    config: DeviceConfig, store: MeasurementStore, groups: Sequence[Sequence[Network]]
) -> list[list[Sample]]:
    """Time every group of networks on the device in one pass, in a shuffled order, and return
    each group's samples: this machine's speed drifts by several per cent over minutes, and
    timing the few-shot picks after the held-out networks would turn that drift into a bias
    of every fit on the picks."""
    unique = list({net.ops: net for group in groups for net in group}.values())
    order = random.Random(PICK_SEED).sample(unique, len(unique))
    samples = dict(zip((n.ops for n in order), timed(config, store, order, "networks")))
    return [[samples[net.ops] for net in group] for group in groups]


def part_local(store: MeasurementStore, out: Path, quick: bool) -> None:
    space = load_space("proxyless-tiny")
    configs = DEVICES[:3] if quick else DEVICES
    n_test = 40 if quick else HELD_OUT
    print(f"\n== local: {space.name}, {len(configs)} devices of this CPU ({host_model()}) ==")
    started = os.getloadavg()
    nets = [n for _, n in space.sample_networks(n_test + RANDOM_POOL, seed=TEST_SEED)]
    full = {config.name: profile(config, space, store, out) for config in configs}
    for config in configs:
        sources = [Source(c.name, full[c.name], c.batch_size) for c in configs if c != config]
        picks = pick_networks(space, sources, max(SHOTS), batch=config.batch_size, seed=PICK_SEED)
        test, pool, picked = time_interleaved(config, store, [nets[:n_test], nets[n_test:], picks])
        device = Device(config, space, full[config.name], test, pool)
        leave_out(config.name, device, sources, picked)
    noise_free(space, configs, full, nets[:n_test])
    print(f"  {load_note(started)}")


def noise_free(space: SearchSpace, configs, full: dict, test: Sequence[Network]) -> None:
    """Chosen against random picks at N = 10 with each device's own full-profile F as its
    truth: what the choice of networks is worth when no timing noise or drift hides it."""
    print("\n  noise-free check, N = 10 (truth: the left-out device's full-profile F)")
    pool = [net for _, net in space.sample_networks(1000, seed=PICK_SEED)]
    for config in configs:
        sources = [Source(c.name, full[c.name], c.batch_size) for c in configs if c != config]
        target = Source(config.name, full[config.name], config.batch_size)
        picks = pick_networks(space, sources, 10, seed=PICK_SEED)
        chosen = priced_fit(picks, target, sources, test)
        rng = random.Random(PICK_SEED)
        draws = [
            priced_fit(rng.sample(pool, 10), target, sources, test) for _ in range(RANDOM_DRAWS)
        ]
        print(
            f"  {config.name:<10} chosen: Spearman {chosen['spearman']:.3f}, ±10% "
            f"{chosen['acc10']:.1%}; random: Spearman mean "
            f"{np.mean([d['spearman'] for d in draws]):.3f}, ±10% mean "
            f"{np.mean([d['acc10'] for d in draws]):.1%} (worst "
            f"{min(d['acc10'] for d in draws):.1%})"
        )


def priced_fit(
    picks: Sequence[Network], target: Source, sources: list[Source], test: Sequence[Network]
) -> dict[str, float]:
    """Transfer fitted on `picks` priced by the target's F, scored on `test` priced likewise."""
    train = [(tuple(target.at_batch(n.ops)), float(target.price([n.ops])[0])) for n in picks]
    fitted, _ = fit_transfer(train, sources)
    truth = target.price([n.ops for n in test])
    return report([fitted.predict_network(target.at_batch(n.ops)) for n in test], truth)


def lut_samples(table: dict, networks: Sequence[Network]) -> list[Sample]:
    """The phone's "timings": its table's sums, as `import-networks` of them would store."""
    return [(n.ops, float(sum(table[op] for op in n.ops if op.type != "zero"))) for n in networks]


def part_phone(store: MeasurementStore, out: Path, quick: bool) -> None:
    space = load_space("proxyless-mobile")
    configs = DEVICES[:2] if quick else DEVICES[:4]
    print(
        f"\n== phone: the ProxylessNAS phone table left out; {space.name}, sources profiled here =="
    )
    started = os.getloadavg()
    _, entries = read_lut(TRIM)
    table = {e.op: e.mean for e in entries}
    sources = [Source(c.name, profile(c, space, store, out), c.batch_size) for c in configs]
    n_test = 40 if quick else HELD_OUT
    nets = [n for _, n in space.sample_networks(n_test + RANDOM_POOL, seed=TEST_SEED)]
    samples = lut_samples(table, nets)
    ops, y = zip(*table.items())
    full = LatencyPredictor(seed=0, device="phone").fit(list(ops), list(y))
    target = Device(None, space, full, samples[:n_test], samples[n_test:])
    picked = lut_samples(table, pick_networks(space, sources, max(SHOTS), seed=PICK_SEED))
    leave_out("ProxylessNAS phone table", target, sources, picked)
    print(f"  {load_note(started)}")


def cli(args: list[str], cwd: Path) -> float:
    """Run `latkit ARGS` as a user would (outside the repository, so the installed package
    is what runs; its output to cwd/latkit.log) and return its wall time."""
    started = time.perf_counter()
    with (cwd / "latkit.log").open("a") as log:
        argv = [sys.executable, "-m", "latkit", *args]
        subprocess.run(argv, cwd=cwd, check=True, stdout=log, stderr=log)
    return time.perf_counter() - started


def part_wall(store: MeasurementStore, out: Path, quick: bool) -> None:
    """`latkit profile --networks 10` against the full `latkit profile`, each into a fresh store,
    on the emulated phone (LiteRT on this host's CPU over the ADB protocol)."""
    space = "proxyless-tiny" if quick else "proxyless-mobile"
    print(f"\n== wall: few-shot against full profile on the emulated phone, {space} ==")
    print("  (the emulated phone runs LiteRT on this host: host-CPU numbers, not a phone's)")
    started = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="latkit-fewshot-") as tmp:
        with emulated_phone(Path(tmp)) as device:
            base = ["profile", "--device", str(device), "--space", space]
            few = cli([*base, "--networks", "10", "--db", "few.sqlite"], Path(tmp))
            full = cli([*base, "--db", "full.sqlite"], Path(tmp))
    print(f"  profile --networks 10: {few:.0f} s; full profile (ops + calibration): {full:.0f} s")
    print(f"  few-shot / full = {few / full:.2f}; {load_note(started)}")


PARTS = {"local": part_local, "phone": part_phone, "wall": part_wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer devices and networks")
    parser.add_argument("--db", type=Path, help="reuse this store (timings are kept)")
    parser.add_argument("--out", type=Path, help="folder for predictors (default: temporary)")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        with MeasurementStore(args.db or Path(tmp) / "fewshot.sqlite") as store:
            for part in args.parts.split(","):
                PARTS[part](store, out, args.quick)


if __name__ == "__main__":
    main()
