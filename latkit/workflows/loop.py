"""The closed loop on the device: derive, time, refit F's network terms, derive again.

`close_loop` times the architecture the search derived on the device (`loop_rounds`). Where
predicted and measured disagree by more than `TOLERANCE` (or the measurement misses the target),
the timing joins the device's calibration networks, F's network terms are refit around the
target (`fit_overhead`), the architecture is derived again and timed again: at most `rounds`
rounds, each stored and reported. The network the loop settles on (`pick_round`) is then timed
once more, afresh: that timing is the result's, and F's error is that of its prediction for the
network in the round it was first derived, before any refit saw a timing of it (a round's timing
reused for the result, or an error from a refit on the network's own timing, would report an
error of ~0 by construction).

Apart from the search (`latkit.workflows.search`) because it needs nothing of it but the
architecture's probabilities: the loop is the part of a search that runs on the device.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from latkit.devices import DeviceConfig
from latkit.ops import OpSpec
from latkit.predictors import LatencyPredictor
from latkit.predictors.fit import stored_networks
from latkit.reporting import Reporter, SilentReporter
from latkit.search.export import derive, window
from latkit.search.latency import LatencyTable
from latkit.spaces import Network, SearchSpace
from latkit.store import MeasurementStore
from latkit.workflows.defaults import ROUNDS

if TYPE_CHECKING:
    from latkit.profilers.base import Profiler

#: predicted vs measured, and measured vs T, agree when within this share
TOLERANCE = 0.05
#: a whole-network timing as F's refits take it: (ops, measured ms)
Sample = tuple[tuple[OpSpec, ...], float]


@dataclass(frozen=True)
class Round:
    """One derive-and-time round of the closed loop. `predicted_ms` is F's prediction from the
    round `predicted_round` in which this architecture was first derived, before its timing
    reached F: a later refit has seen it, so its prediction would say nothing of F. `seen`:
    F's samples already held a timing of it then (a calibration network, or an earlier
    search's), so even that prediction is not blind."""

    index: int
    arch: tuple[int, ...]
    predicted_ms: float
    measured_ms: float
    timing_s: float
    refit_s: float = 0.0
    predicted_round: int = 0
    seen: bool = False

    @property
    def error(self) -> float:
        """(predicted − measured) / measured."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.index,
            "arch_index": list(self.arch),
            "predicted_ms": self.predicted_ms,
            "predicted_round": self.predicted_round or self.index,
            "seen": self.seen,
            "measured_ms": self.measured_ms,
            "error": self.error,
        }


@dataclass(frozen=True)
class LoopResult:
    """The closed loop's rounds, and the network it settled on timed once more, afresh."""

    rounds: tuple[Round, ...]
    final: Round
    measured_ms: float
    timing_s: float


@dataclass
class LoopTerms:
    """F, and the whole-network timings its network terms were last refit on: whether F has
    seen a network's timing decides what its prediction for that network is worth."""

    predictor: LatencyPredictor
    near_ms: float
    samples: list[Sample] = field(default_factory=list)

    def refit(self, samples: list[Sample]) -> None:
        """Refit F's network terms near `near_ms` on `samples` (`fit_overhead`, nothing else)."""
        self.samples = list(samples)
        self.predictor.fit_overhead(self.samples, near_ms=self.near_ms)

    def holds(self, timed: Sequence[OpSpec]) -> bool:
        """Whether F was refit on a timing of this network (`timed`: its ops as its device
        times them)."""
        keys = tuple(op.key for op in timed)
        return any(tuple(op.key for op in ops) == keys for ops, _ in self.samples)


def landing(target_ms: float, hard: bool) -> tuple[float, float]:
    """Where a measured latency lands on T: the derivation's window (`search.export.window`)
    at the loop's `TOLERANCE` instead of the derivation's `WINDOW`, i.e. [T(1−2·tol), T] with a
    hard budget, else T(1±tol)."""
    return window(target_ms, hard, TOLERANCE)


def settled(rnd: Round, target_ms: float, hard: bool, range_ms: tuple[float, float]) -> bool:
    """F agrees with the device on this round's network, and (where T is in reach) the
    measurement lands on T."""
    if abs(rnd.error) > TOLERANCE:
        return False
    if not range_ms[0] <= target_ms <= range_ms[1]:
        return True
    low, high = landing(target_ms, hard)
    return low <= rnd.measured_ms <= high


def pick_round(
    done: tuple[Round, ...], target_ms: float, hard: bool, range_ms: tuple[float, float]
) -> Round:
    """The first settled round, else the one whose measurement comes nearest the target (with a
    hard budget: under T first)."""
    for rnd in done:
        if settled(rnd, target_ms, hard, range_ms):
            return rnd
    return min(
        done,
        key=lambda r: (hard and r.measured_ms > target_ms, abs(r.measured_ms / target_ms - 1)),
    )


def close_loop(
    device: DeviceConfig,
    terms: LoopTerms,
    space: SearchSpace,
    probs: list[np.ndarray],
    arch: tuple[int, ...],
    target_ms: float,
    *,
    hard: bool,
    rounds: int = ROUNDS,
    batch: int = 1,
    store: MeasurementStore | None = None,
    reporter: Reporter | None = None,
) -> LoopResult:
    """Derive-and-time rounds on `device` (`loop_rounds`), then the network they settle on
    (`pick_round`) timed once more, afresh: the loop stopped on a round because of that
    round's timing (or F was refit on it), so only a timing taken after the loop says, without
    that selection, what the network runs in."""
    from latkit.profilers import ProfilerOptions, get_profiler

    reporter = reporter or SilentReporter()
    table = LatencyTable.from_predictor(terms.predictor, space, batch=batch)
    range_ms = (table.fastest()[1], table.slowest()[1])
    profiler = get_profiler(device, ProfilerOptions(reporter=reporter))
    try:
        done = loop_rounds(
            profiler,
            terms,
            space,
            probs,
            arch,
            target_ms,
            hard,
            range_ms,
            rounds,
            batch,
            store,
            reporter,
        )
        final = pick_round(done, target_ms, hard, range_ms)
        network = space.network(final.arch, batch=batch, name=f"{space.name}-{target_ms:g}ms")
        measured, timing_s = time_once(
            profiler, store, network, "timing the result afresh", reporter
        )
    finally:
        profiler.close()
    error = (final.predicted_ms - measured) / measured
    reporter.note(
        f"result timed afresh: measured {measured:.4f} ms, measured / T "
        f"{measured / target_ms:.3f}; F's error {error:+.1%} "
        f"({prediction_source(final.predicted_round, final.seen)})"
    )
    return LoopResult(done, final, measured, timing_s)


def prediction_source(round_index: int, seen: bool) -> str:
    """Where a result's prediction came from, in words."""
    if seen:
        return f"predicted in round {round_index}; F had a stored timing of it already"
    return f"predicted in round {round_index}, before F saw its timing"


def loop_rounds(
    profiler: Profiler,
    terms: LoopTerms,
    space: SearchSpace,
    probs: list[np.ndarray],
    arch: tuple[int, ...],
    target_ms: float,
    hard: bool,
    range_ms: tuple[float, float],
    rounds: int,
    batch: int,
    store: MeasurementStore | None,
    reporter: Reporter,
) -> tuple[Round, ...]:
    """Time `arch` once; until a round settles (or `rounds` are done), add the timing to the
    device's calibration networks, refit F's network terms around the target (`fit_overhead`,
    and nothing else: fitting F's level on the loop's own timings makes its next prediction
    right by construction), derive again from `probs`, and time again. Each architecture keeps
    the prediction of the round it was first derived in. Each round is stored (origin `search`)
    and reported. `range_ms`: F's range for the space as the loop began."""
    device = profiler.device
    env_id = profiler.environment().env_id
    first: dict[tuple[int, ...], tuple[int, float, bool]] = {}
    own: list[Sample] = []
    done: list[Round] = []
    for index in range(1, rounds + 1):
        network = space.network(arch, batch=batch, name=f"{space.name}-{target_ms:g}ms")
        timed = tuple(profiler.prepare(network.ops))
        if arch not in first:
            first[arch] = (index, terms.predictor.predict_network(network.ops), terms.holds(timed))
        origin, predicted, seen = first[arch]
        measured, timing_s = time_once(
            profiler, store, network, f"round {index}: timing it on {device.name}", reporter
        )
        rnd = Round(index, arch, predicted, measured, timing_s, predicted_round=origin, seen=seen)
        since = "" if origin == index else f" (predicted in round {origin})"
        reporter.note(
            f"round {index}: predicted {predicted:.4f} ms, measured {measured:.4f} ms "
            f"({rnd.error:+.1%}){since}, measured / T {measured / target_ms:.3f}"
        )
        own.append((timed, measured))
        if settled(rnd, target_ms, hard, range_ms) or index == rounds:
            done.append(rnd)
            break
        started = time.perf_counter()
        terms.refit(stored_networks(store, device.name, env_id) if store is not None else own)
        table = LatencyTable.from_predictor(terms.predictor, space, batch=batch)
        arch = derive(probs, table, target_ms, hard=hard)
        done.append(replace(rnd, refit_s=time.perf_counter() - started))
        predictor = terms.predictor
        reporter.note(
            f"refit F's network terms on {len(terms.samples)} networks near {target_ms:g} ms "
            f"(overhead {predictor.overhead_ms:+.4f} ms, per op {predictor.per_op_ms:.4f} ms)"
        )
    return tuple(done)


def time_once(
    profiler: Profiler,
    store: MeasurementStore | None,
    network: Network,
    description: str,
    reporter: Reporter,
) -> tuple[float, float]:
    """(median ms, seconds taken) of one fresh timing of `network`, stored with origin
    `search`: one timing, like every network F is judged on, not the fastest of several."""
    from latkit.profilers.session import time_network

    advance = reporter.task(description, 1)
    started = time.perf_counter()
    stats = time_network(profiler, store, network, origin="search", reuse=False)
    advance(1)
    return stats.median_ms, time.perf_counter() - started
