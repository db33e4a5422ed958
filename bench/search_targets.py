"""Searches at three latency targets on this CPU: predicted and measured latency, test accuracy.

Profiles proxyless-tiny with the embedded default device (local-cpu: onnxruntime, 1 thread),
fits F (its per-network overhead from 10 calibration networks), then searches on digits at three
targets between the fastest and the slowest architecture. Each search gives two architectures:
the argmax (soft latency loss only) and its projection onto the hard budget (`--hard-budget`).
Both are timed end to end with the device's profiler and trained from scratch for test accuracy.

    python bench/search_targets.py [--db /tmp/targets.sqlite] [--data-dir /tmp/targets]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("/tmp/latkit-targets/store.sqlite"))
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/latkit-targets/data"))
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.45, 0.7])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--warmup-epochs", type=int, default=4)
    parser.add_argument("--final-epochs", type=int, default=4)
    parser.add_argument("--loss", default="add-linear")
    parser.add_argument("--lams", type=float, nargs="+", default=[0.1, 0.01])
    parser.add_argument("--train-threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from latkit.predictors import fit_device
    from latkit.predictors.fit import predictor_path
    from latkit.profilers import get_profiler
    from latkit.profilers.session import profile_ops, time_network
    from latkit.search.datasets import load_dataset
    from latkit.search.export import project_to_budget
    from latkit.search.latency import LatencyTable
    from latkit.search.supernet import trainable_network
    from latkit.search.trainer import SearchConfig, train_network
    from latkit.spaces import load_space
    from latkit.store import MeasurementStore
    from latkit.workflows.quickstart import CALIBRATION_SEED, default_device
    from latkit.workflows.search import ARCH_LR, measure_network, run_search

    torch.set_num_threads(args.train_threads)
    device = default_device()
    space = load_space("proxyless-tiny")
    args.db.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with MeasurementStore(args.db) as store:
        profiler = get_profiler(device)
        try:
            profile_ops(profiler, space.distinct_ops(), store)
            samples = [
                (
                    tuple(profiler.prepare(net.ops)),
                    time_network(profiler, store, net, origin="calibrate").median_ms,
                )
                for _, net in space.sample_networks(10, CALIBRATION_SEED)
            ]
        finally:
            profiler.close()
        report = fit_device(store, device.name, data_dir=args.data_dir)
        predictor = report.predictor
        predictor.fit_overhead(samples)
        predictor.save(predictor_path(device.name, args.data_dir))
        table = LatencyTable.from_predictor(predictor, space, batch=device.batch_size)
        _, fastest = table.fastest()
        _, slowest = table.slowest()
        print(
            f"{device.name}: F fitted on {report.n_train + report.n_test} ops, overhead "
            f"{predictor.overhead_ms:+.4f} ms from {len(samples)} calibration networks; "
            f"architectures span {fastest:.4f} .. {slowest:.4f} ms predicted "
            f"({time.perf_counter() - started:.0f} s)"
        )
        print(
            f"search: {args.warmup_epochs}+{args.epochs} epochs, {args.loss} (λ as listed), "
            f"two-path, arch lr "
            f"{ARCH_LR}, digits; final networks trained {args.final_epochs} epochs\n"
        )
        data = load_dataset("digits", space.input_hw, seed=0)
        header = (
            f"{'λ':>5} {'target':>7} | {'kind':>6} {'predicted':>9} {'measured':>9} {'meas/T':>7} "
            f"{'within10%':>9} {'<=T':>4} {'test acc':>8} | architecture"
        )
        print(header)
        print("-" * len(header))
        for lam, fraction in [(lam, f) for lam in args.lams for f in args.fractions]:
            target = round(fastest + fraction * (slowest - fastest), 4)
            config = SearchConfig(
                target_ms=target,
                epochs=args.epochs,
                warmup_epochs=args.warmup_epochs,
                arch_lr=ARCH_LR,
                loss=args.loss,
                loss_params={"lam": lam},
                seed=0,
            )
            soft = run_search(
                device,
                config,
                space=space,
                dataset=data,
                predictor=predictor,
                final_epochs=args.final_epochs,
                data_dir=args.data_dir,
                store=store,
            )
            hard_arch = project_to_budget(soft.probs, table, target)
            rows = [("soft", soft.arch, soft.predicted_ms, soft.measured_ms, soft.accuracy)]
            if hard_arch == soft.arch:
                rows.append(("hard", *rows[0][1:]))
            else:
                network = space.network(hard_arch, batch=device.batch_size, name="hard")
                accuracy = train_network(
                    trainable_network(network), data, args.final_epochs, seed=0
                )
                measured = measure_network(device, network, store)
                rows.append(
                    (
                        "hard",
                        hard_arch,
                        predictor.predict_network(network.ops),
                        measured,
                        accuracy,
                    )
                )
            for kind, arch, predicted, measured, accuracy in rows:
                ratio = measured / target
                print(
                    f"{lam:5g} {target:7.4f} | {kind:>6} {predicted:9.4f} {measured:9.4f} {ratio:7.2f} "
                    f"{'yes' if abs(ratio - 1) <= 0.10 else 'no':>9} "
                    f"{'yes' if measured <= target else 'no':>4} {accuracy:8.1%} | "
                    f"{'-'.join(map(str, arch))}"
                )
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
