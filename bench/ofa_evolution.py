"""once-for-all's evolutionary search under latkit's F, self-contained: the `ofa` package imports
torchvision, which does not load here, so its loop is written out.

    python bench/ofa_evolution.py [--device NAME --data-dir DIR] [--constraint MS]
        [--population 100] [--generations 50] [--seed 0]

The loop is `EvolutionFinder.run_evolution_search` (mit-han-lab/once-for-all,
ofa/nas/search_algorithm/evolution.py) with its defaults (parent ratio 0.25, mutation ratio 0.5,
arch mutation 0.1, resolution mutation 0.5), sampling and mutating subnets as its
`MobileNetArchEncoder` does (ofa/nas/accuracy_predictor/arch_encoder.py), at the tutorial's
resolutions 160-224; every sample is priced by `OFAEfficiency.get_efficiency` and kept only
within the constraint. once-for-all's accuracy predictor is a network of downloaded weights: a
stand-in ranks subnets by MACs (bigger is more accurate, roughly), enough to see the constraint
hold and bind.

Without --device, F is fitted on once-for-all's Note10 tables at those resolutions
(tests/data/luts/ofa-note10) in a temporary store. Prints the constraint (default: the median
of F over 100 random subnets), the best subnet with F's latency and interval, how many samples
F priced and rejected, and the mean cost of one `get_efficiency` call.
"""

from __future__ import annotations

import argparse
import copy
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from latkit.predictors import fit_device, import_lut, load_predictor
from latkit.store import MeasurementStore
from latkit.workflows.ofa import OFAEfficiency

ROOT = Path(__file__).resolve().parents[1]
NOTE10 = ROOT / "tests" / "data" / "luts" / "ofa-note10"
RESOLUTIONS = [160, 176, 192, 208, 224]
KS, EXPANDS, DEPTHS = [3, 5, 7], [3, 4, 6], [2, 3, 4]
Arch = dict[str, Any]


def note10_predictor() -> Any:
    """F fitted on once-for-all's Note10 tables, in a store that is thrown away."""
    with tempfile.TemporaryDirectory() as tmp, MeasurementStore(Path(tmp) / "s.sqlite") as store:
        for size in RESOLUTIONS:
            import_lut(store, NOTE10 / f"{size}_lookup_table.yaml", "note10")
        return fit_device(store, "note10", data_dir=Path(tmp)).predictor


class Search:
    """`EvolutionFinder` with `MobileNetArchEncoder`'s sampling, priced by F."""

    def __init__(
        self,
        efficiency: OFAEfficiency,
        constraint: float,
        seed: int,
        resolutions: Sequence[int] = RESOLUTIONS,
    ) -> None:
        self.efficiency = efficiency
        self.constraint = constraint
        self.rng = random.Random(seed)
        self.resolutions = list(resolutions)
        self.priced = self.rejected = 0
        self.seconds = 0.0

    def accuracy(self, arch: Arch) -> float:
        """The stand-in for once-for-all's accuracy predictor: the subnet's MACs."""
        return float(sum(op.macs for op in self.efficiency.network(arch).ops))

    def price(self, arch: Arch) -> float:
        start = time.perf_counter()
        ms = self.efficiency.get_efficiency(arch)
        self.seconds += time.perf_counter() - start
        self.priced += 1
        return ms

    def sample(self) -> Arch:
        """`random_sample_arch` (arch_encoder.py, lines 141-147)."""
        return {
            "ks": self.rng.choices(KS, k=20),
            "e": self.rng.choices(EXPANDS, k=20),
            "d": self.rng.choices(DEPTHS, k=5),
            "image_size": self.rng.choice(self.resolutions),
        }

    def mutate(self, parent: Arch) -> Arch:
        """`mutate_resolution` and `mutate_arch` (arch_encoder.py, lines 149-163)."""
        arch = copy.deepcopy(parent)
        if self.rng.random() < 0.5:
            arch["image_size"] = self.rng.choice(self.resolutions)
        for i in range(20):
            if self.rng.random() < 0.1:
                arch["ks"][i], arch["e"][i] = self.rng.choice(KS), self.rng.choice(EXPANDS)
        for i in range(5):
            if self.rng.random() < 0.1:
                arch["d"][i] = self.rng.choice(DEPTHS)
        return arch

    def crossover(self, a: Arch, b: Arch) -> Arch:
        """`crossover_sample` (evolution.py, lines 51-65)."""
        return {
            k: [self.rng.choice(pair) for pair in zip(a[k], b[k])]
            if isinstance(a[k], list)
            else self.rng.choice([a[k], b[k]])
            for k in a
        }

    def valid(self, make: Any, *parents: Arch) -> tuple[float, Arch, float]:
        """(accuracy, arch, ms) of the first subnet `make` returns within the constraint."""
        while True:
            arch = make(*parents)
            ms = self.price(arch)
            if ms <= self.constraint:
                return self.accuracy(arch), arch, ms
            self.rejected += 1

    def run(self, population_size: int, generations: int) -> tuple[float, Arch, float]:
        """`run_evolution_search` (evolution.py, lines 67-140): the best (accuracy, arch, ms)."""
        n_parents, n_mutations = round(0.25 * population_size), round(0.5 * population_size)
        population = [self.valid(self.sample) for _ in range(population_size)]
        best = max(population, key=lambda p: p[0])
        for _ in range(generations):
            parents = sorted(population, key=lambda p: p[0], reverse=True)[:n_parents]
            best = max(best, parents[0], key=lambda p: p[0])
            population = list(parents)
            for _ in range(n_mutations):
                population.append(self.valid(self.mutate, self.rng.choice(parents)[1]))
            for _ in range(population_size - n_mutations):
                pair = self.rng.choice(parents)[1], self.rng.choice(parents)[1]
                population.append(self.valid(self.crossover, *pair))
        return max(best, *population, key=lambda p: p[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", help="a fitted device's F (default: the Note10 tables)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--constraint", type=float, help="ms (default: F's median subnet)")
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--generations", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    predictor = load_predictor(args.device, args.data_dir) if args.device else note10_predictor()
    efficiency = OFAEfficiency(predictor)
    label = args.device or "once-for-all's Note10 tables"
    print(f"F of {label} ({time.perf_counter() - start:.1f} s to load or fit)")
    search = Search(efficiency, float("inf"), args.seed)
    if args.constraint is None:
        latencies = sorted(search.price(search.sample()) for _ in range(100))
        args.constraint = latencies[50]
        print(f"F over 100 random subnets: {latencies[0]:.2f} .. {latencies[-1]:.2f} ms")
    search = Search(efficiency, args.constraint, args.seed)
    start = time.perf_counter()
    macs, arch, ms = search.run(args.population, args.generations)
    took = time.perf_counter() - start
    answer = efficiency.answer(arch)
    print(
        f"constraint {args.constraint:.2f} ms; {args.generations} generations of "
        f"{args.population} in {took:.1f} s"
    )
    print(
        f"best subnet: {macs / 1e6:.0f}M MACs, F {ms:.2f} ms "
        f"(90% interval {answer.low_ms:.2f} .. {answer.high_ms:.2f}; {ms / args.constraint:.1%}"
        " of the constraint)"
    )
    print(f"  image_size {arch['image_size']}, d {arch['d']}")
    print(f"  ks {arch['ks']}\n  e  {arch['e']}")
    print(
        f"get_efficiency: {search.priced} calls, {search.rejected} over the constraint, "
        f"{search.seconds / search.priced * 1e3:.2f} ms a call"
    )


if __name__ == "__main__":
    main()
