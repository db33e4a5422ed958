"""Does a search land on its target? Measured / T on this CPU, with the closed loop, side by side.

1. proxyless-tiny + digits on the embedded default device (local-cpu: onnxruntime, 1 thread),
   profiled as `latkit profile` does (ops, then calibration networks) and fitted as `latkit fit`
   does (no validate). Three targets at 25%, 50% and 75% of F's predicted range, searched with
   the default loss (`lagrangian`) with and without `--hard-budget`, and with ProxylessNAS's
   `add-linear` at λ 0.1 (one search per target, derived and timed both ways). Each row: E[LAT]
   / T at the end of the search, the argmax architecture's predicted / T (what the old derivation
   started from), the derived network's predicted and measured latency, measured / T,
   |predicted − measured| / measured, the loop's rounds, and the time the loop added.
2. proxyless-mobile + digits upsampled, short schedule: one target (50% of the range).
3. The paper's setting: ProxylessNAS's own phone table imported as `proxyless-phone`, fitted,
   and searched on proxyless-mobile at T = 80 ms, nothing measured: F's predicted latency.

    python bench/search_targets.py [--db /tmp/latkit-targets/store.sqlite] [--parts tiny mobile paper]

The machine may be shared: the load average is printed beside every part.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRIM = ROOT / "tests" / "data" / "luts" / "proxylessnas" / "mobile_trim.yaml"
FRACTIONS = (0.25, 0.5, 0.75)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("/tmp/latkit-targets/store.sqlite"))
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/latkit-targets/data"))
    parser.add_argument("--parts", nargs="+", default=["tiny", "mobile", "paper"])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--warmup-epochs", type=int, default=4)
    parser.add_argument("--mobile-epochs", type=int, default=2)
    parser.add_argument("--mobile-warmup-epochs", type=int, default=2)
    parser.add_argument("--final-epochs", type=int, default=0)
    parser.add_argument("--train-threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from latkit.predictors import LatencyPredictor, fit_device, import_lut
    from latkit.search.export import derive
    from latkit.search.latency import LatencyTable
    from latkit.search.trainer import SearchConfig
    from latkit.spaces import load_space
    from latkit.store import MeasurementStore
    from latkit.workflows.loop import close_loop, pick_round
    from latkit.workflows.profile import profile_space
    from latkit.workflows.quickstart import default_device
    from latkit.workflows.search import run_search

    torch.set_num_threads(args.train_threads)
    device = default_device()
    args.db.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def prepare(store: MeasurementStore, space) -> tuple[LatencyPredictor, float, float]:
        t0 = time.perf_counter()
        profile_space(device, space, store)
        predictor = fit_device(store, device.name, data_dir=args.data_dir).predictor
        table = LatencyTable.from_predictor(predictor, space, batch=device.batch_size)
        fastest, slowest = table.fastest()[1], table.slowest()[1]
        print(
            f"{space.name} on {device.name}: profiled + calibrated + fitted in "
            f"{time.perf_counter() - t0:.0f} s; overhead {predictor.overhead_ms:+.4f} ms, "
            f"per op {predictor.per_op_ms:.4f} ms from "
            f"{predictor.meta.get('overhead_networks', 0)} networks; "
            f"predicted range {fastest:.4f} .. {slowest:.4f} ms ({load()})"
        )
        return predictor, fastest, slowest

    header = (
        f"{'loss':>10} {'budget':>6} {'T ms':>7} | {'E/T':>5} {'argmax/T':>8} | "
        f"{'pred ms':>8} {'meas ms':>8} {'meas/T':>6} {'|p-m|/m':>7} {'rounds':>6} "
        f"{'landed':>6} | {'search s':>8} {'loop s':>6} {'acc':>6}"
    )

    def row(loss, hard, target, result, rounds, table, loop_s):
        final = pick_round(rounds, target, hard, result.range_ms)
        expected = result.history[-1].expected_ms if result.history else float("nan")
        ratio = final.measured_ms / target
        landed = (0.9 <= ratio <= 1.0) if hard else abs(ratio - 1) <= 0.05
        accuracy = "-" if result.accuracy is None else f"{result.accuracy:.1%}"
        print(
            f"{loss:>10} {'hard' if hard else 'soft':>6} {target:7.4f} | "
            f"{expected / target:5.3f} {table.of_arch(result.argmax_arch) / target:8.3f} | "
            f"{final.predicted_ms:8.4f} {final.measured_ms:8.4f} {ratio:6.3f} "
            f"{abs(final.error):7.1%} {len(rounds):>6} {'yes' if landed else 'no':>6} | "
            f"{result.search_s:8.0f} {loop_s:6.1f} {accuracy:>6}",
            flush=True,
        )
        return landed, loop_s, result.search_s + sum(r.timing_s for r in rounds[:1])

    with MeasurementStore(args.db) as store:
        if "tiny" in args.parts:
            space = load_space("proxyless-tiny")
            predictor, fastest, slowest = prepare(store, space)
            print(
                f"search: {args.warmup_epochs}+{args.epochs} epochs on digits, two-path, arch lr "
                f"0.03, final networks trained {args.final_epochs} epochs; rounds <= 3\n"
            )
            print(header)
            print("-" * len(header))
            totals = {"loop": 0.0, "rest": 0.0}
            landed = []
            for fraction in FRACTIONS:
                target = round(fastest + fraction * (slowest - fastest), 4)
                common = dict(
                    space=space,
                    predictor=predictor,
                    final_epochs=args.final_epochs,
                    data_dir=args.data_dir,
                    store=store,
                )
                settings = dict(
                    target_ms=target, epochs=args.epochs, warmup_epochs=args.warmup_epochs
                )
                for hard in (False, True):
                    result = run_search(
                        device,
                        SearchConfig(**settings),
                        hard_budget=hard,
                        out_dir=args.data_dir / f"lagrangian-{fraction}-{hard}",
                        **common,
                    )
                    table = LatencyTable.from_predictor(predictor, space)
                    ok, loop_s, rest = row(
                        "lagrangian", hard, target, result, result.rounds, table, result.loop_s
                    )
                    landed.append(("lagrangian", hard, ok))
                    totals["loop"] += loop_s
                    totals["rest"] += rest
                config = SearchConfig(**settings, loss="add-linear", loss_params={"lam": 0.1})
                result = run_search(
                    device, config, out_dir=args.data_dir / f"add-linear-{fraction}", **common
                )
                table = LatencyTable.from_predictor(predictor, space)
                landed.append(
                    (
                        "add-linear",
                        False,
                        row(
                            "add-linear", False, target, result, result.rounds, table, result.loop_s
                        )[0],
                    )
                )
                rounds = close_loop(
                    device,
                    LatencyPredictor.from_state(predictor.to_state()),
                    space,
                    list(result.probs),
                    derive(list(result.probs), table, target, hard=True),
                    target,
                    hard=True,
                    store=store,
                )
                loop_s = sum(r.refit_s for r in rounds) + sum(r.timing_s for r in rounds[1:])
                hard_result = replace(result, rounds=rounds)
                landed.append(
                    (
                        "add-linear",
                        True,
                        row("add-linear", True, target, hard_result, rounds, table, loop_s)[0],
                    )
                )
            print(f"\n({load()})")
            for loss in ("lagrangian", "add-linear"):
                for hard in (False, True):
                    hits = [ok for name, h, ok in landed if name == loss and h == hard]
                    print(
                        f"{loss:>10} {'hard' if hard else 'soft'}: landed {sum(hits)} of "
                        f"{len(hits)} ({'measured <= T and >= 0.9 T' if hard else '±5% of T'})"
                    )
            print(
                f"loop (extra timings, refits, derivations): {totals['loop']:.1f} s against "
                f"{totals['rest']:.0f} s of search and first timing, lagrangian runs: "
                f"{totals['loop'] / totals['rest']:.2%}\n"
            )

        if "mobile" in args.parts:
            space = load_space("proxyless-mobile")
            predictor, fastest, slowest = prepare(store, space)
            target = round(fastest + 0.5 * (slowest - fastest), 3)
            print(
                f"search: {args.mobile_warmup_epochs}+{args.mobile_epochs} epochs on digits "
                f"upsampled to 224, lagrangian, soft\n"
            )
            print(header)
            print("-" * len(header))
            config = SearchConfig(
                target_ms=target,
                epochs=args.mobile_epochs,
                warmup_epochs=args.mobile_warmup_epochs,
            )
            result = run_search(
                device,
                config,
                space=space,
                predictor=predictor,
                final_epochs=0,
                data_dir=args.data_dir,
                store=store,
                out_dir=args.data_dir / "mobile",
            )
            table = LatencyTable.from_predictor(predictor, space)
            row("lagrangian", False, target, result, result.rounds, table, result.loop_s)
            print(f"({load()})\n")

        if "paper" in args.parts:
            space = load_space("proxyless-mobile")
            dialect, rows = import_lut(store, TRIM, "proxyless-phone")
            fitted = fit_device(store, "proxyless-phone", data_dir=args.data_dir)
            config = SearchConfig(
                target_ms=80.0,
                epochs=args.mobile_epochs,
                warmup_epochs=args.mobile_warmup_epochs,
            )
            result = run_search(
                "proxyless-phone",
                config,
                space=space,
                predictor=fitted.predictor,
                final_epochs=0,
                data_dir=args.data_dir,
                store=store,
                out_dir=args.data_dir / "paper",
            )
            expected = result.history[-1].expected_ms if result.history else float("nan")
            print(
                f"paper setting: {rows} ops of {TRIM.name} ({dialect}) as proxyless-phone, "
                f"F family {fitted.predictor.meta['family']}; proxyless-mobile range "
                f"{result.range_ms[0]:.2f} .. {result.range_ms[1]:.2f} ms; T = 80 ms, "
                f"{args.mobile_warmup_epochs}+{args.mobile_epochs} epochs on digits: "
                f"E[LAT] {expected:.2f} ms, argmax {result.argmax_ms:.2f} ms, "
                f"found network predicted {result.predicted_ms:.2f} ms "
                f"({result.predicted_ms / 80:.3f} T); {result.note}"
            )
            print(f"architecture: {' '.join(result.names)}")
            print(f"({load()})")
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
