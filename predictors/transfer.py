"""Few-shot F for a new device from the devices the store already knows.

What devices share is how op shapes trade off; what is a device's own is a few numbers. Every
other device d of the space prices a network as x_d(n) (its own F with its network terms), so a
new device is modelled as a non-negative mix of them:

    latency(n) = sum_d w_d * x_d(n) + own terms(n),        w_d >= 0

which is, per op, F(op) = sum_d w_d * F_d's contribution(op): a per-op predictor the search can
differentiate, priced by ops the new device never timed. The device's own numbers are w and b,
fitted for relative error on its few timed networks (non-negative least squares, so no source
counts negatively), plus terms no other device may share: a per-op cost and a depthwise cost per
kernel size (a runtime without fast 7x7 depthwise code is unlike every other). With few networks
the full mix overfits, so leave-one-out chooses among each source alone and all of them mixed,
each with none to all of the own terms (the fewest coefficients within one standard error of
the best); the accuracy and the 90% interval reported are those of predictions for networks
left out of the fit *and* of that choice (nested leave-one-out), as MAPIE's jackknife+
calibrates on data the model never fitted or chose on.

Which networks to time (`pick_networks`): farthest-first traversal over where each network lies
(its typical price across the sources, how the sources' prices of it disagree, and the terms the
new device fits on its own), so the picks spread over the space's range and over the networks on
which the devices differ most. In a noise-free check (each device's own full-profile F as the
truth, bench/fewshot.py's devices) it beat random picks and k-medoids at N = 10.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import nnls

from latkit import metrics
from latkit.errors import LatkitError
from latkit.ops import BLOCK_TYPES, OpSpec
from latkit.predictors.features import components
from latkit.predictors.intervals import Interval, log_residuals
from latkit.predictors.models import Model, register
from latkit.predictors.predictor import LatencyPredictor
from latkit.spaces import Network, SearchSpace

#: fewer timed networks than this leave nothing to check a fit on: fit refuses
MIN_TRANSFER_NETWORKS = 3
#: how many random networks of the space `pick_networks` chooses from
POOL = 1000

Sample = tuple[Sequence[OpSpec], float]


@dataclass(frozen=True)
class Source:
    """One other device of the store, as transfer sees it: its F and the batch its ops are at."""

    name: str
    predictor: LatencyPredictor
    batch: int = 1

    def at_batch(self, ops: Sequence[OpSpec]) -> list[OpSpec]:
        return [op if op.batch == self.batch else op.replace(batch=self.batch) for op in ops]

    def price(self, networks: Sequence[Sequence[OpSpec]]) -> np.ndarray:
        """x_d(n): this device's F of each whole network (its network terms included)."""
        return np.array([self.predictor.predict_network(self.at_batch(ops)) for ops in networks])

    @property
    def fitted_on(self) -> str:
        """What this device's F was fitted on, e.g. "40 op rows" or "12 networks"."""
        meta = self.predictor.meta
        if meta.get("source") == "ops":
            return f"{meta.get('n_ops')} op rows"
        return f"{meta.get('n_networks')} networks"


@dataclass(frozen=True)
class TransferReport:
    """What `fit_transfer` learned and how well it did on networks it left out."""

    n_networks: int
    held_out: dict[str, float]
    #: each source's share of what the sources together add to the fitted networks (sums to 1)
    shares: dict[str, float]
    model: str
    notes: tuple[str, ...]
    #: the device's own terms: per-network overhead and per-op cost (ms), beside the sources'
    own_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "notes": list(self.notes)}


@register
class TransferModel(Model):
    """F(op) = sum_d w_d * contribution_d(op) + the device's own per-op terms: the mix that
    `fit_transfer` fitted. Each source is kept as a single-space copy
    (`LatencyPredictor.for_network`), so an op's contribution uses the network terms of the
    space the mix was fitted on."""

    name = "transfer"

    def __init__(
        self,
        sources: Sequence[tuple[LatencyPredictor, int, float]],
        kernels: Sequence[int] = (),
        own: Sequence[float] = (),
    ) -> None:
        self.sources = [(p, int(b), float(w)) for p, b, w in sources]
        self.kernels = tuple(int(k) for k in kernels)
        self.own = np.zeros(1 + len(self.kernels)) if not len(own) else np.asarray(own, float)

    def predict(self, ops: Sequence[OpSpec]) -> np.ndarray:
        out = _own_per_op(ops, self.kernels) @ self.own
        for predictor, batch, weight in self.sources:
            moved = [op.replace(batch=batch) if op.batch != batch else op for op in ops]
            out += weight * predictor.contribution(moved)
        return out

    @property
    def overhead_ms(self) -> float:
        """What the sources' per-network overheads add up to under the mix."""
        return sum(w * p.overhead_ms for p, _, w in self.sources)

    def to_state(self) -> dict[str, Any]:
        return {
            "family": self.name,
            "kernels": list(self.kernels),
            "own": [float(v) for v in self.own],
            "sources": [
                {"predictor": p.to_state(), "batch": b, "weight": w} for p, b, w in self.sources
            ],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TransferModel:
        sources = [
            (
                LatencyPredictor.from_state(s["predictor"], "transfer source"),
                s["batch"],
                s["weight"],
            )
            for s in state["sources"]
        ]
        return cls(sources, state["kernels"], state["own"])


def _own_per_op(ops: Sequence[OpSpec], kernels: Sequence[int]) -> np.ndarray:
    """The device's own per-op terms, one row per op: 1 for an op that runs (a per-call cost),
    then its depthwise mega-MACs under each kernel size (runtimes differ most in which kernel
    sizes have fast depthwise code: XNNPACK's 7x7 costs this CPU 4-11x onnxruntime's)."""
    rows = np.zeros((len(ops), 1 + len(kernels)))
    for i, op in enumerate(ops):
        if op.type == "zero":
            continue
        rows[i, 0] = 1.0
        if op.type in BLOCK_TYPES and op.kernel in kernels:
            dw = op.output_hw**2 * op.mid * op.kernel**2 * op.batch
            rows[i, 1 + kernels.index(op.kernel)] = dw / 1e6
    return rows


def _own_per_network(networks: Sequence[Sequence[OpSpec]], kernels: Sequence[int]) -> np.ndarray:
    """[1 (the per-network overhead), then the per-op terms summed over each network]."""
    summed = np.array([_own_per_op(ops, kernels).sum(axis=0) for ops in networks])
    return np.column_stack([np.ones(len(networks)), summed])


@dataclass(frozen=True)
class _Variant:
    """A candidate: which sources it mixes and how many of the device's own terms it fits
    (0: none, 1: an overhead, 2: and a per-op cost, 3: and a depthwise cost per kernel size)."""

    columns: tuple[int, ...]
    own: int

    def own_columns(self, n_own: int) -> list[int]:
        return list(range(min(self.own, 2))) + list(range(2, n_own)) * (self.own >= 3)

    def size(self, n_own: int) -> int:
        return len(self.columns) + len(self.own_columns(n_own))

    def describe(self, names: Sequence[str], weights: np.ndarray) -> str:
        """What the fit came to: the sources it gave a weight (the non-negative fit may drop
        some, or all: then the device's own terms alone price it) and its own terms."""
        own = ("overhead", "per-op cost", "depthwise cost per kernel size")[: self.own]
        used = [names[c] for c in self.columns if weights[c] > 0]
        if not used:
            return f"its own {', '.join(own)} alone (no device's F got a weight)"
        how = f"with its own {', '.join(own)}" if own else "scaled"
        return f"{used[0]} {how}" if len(used) == 1 else f"mix of {len(used)} devices {how}"

    def fit(self, x: np.ndarray, own: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Coefficients over [sources..., own terms...]: relative least squares, sources >= 0,
        own terms of either sign (each split into two non-negative parts)."""
        picked = self.own_columns(own.shape[1])
        signed = own[:, picked]
        design = np.hstack([x[:, list(self.columns)], signed, -signed]) / y[:, None]
        coef, _ = nnls(design, np.ones(len(y)), maxiter=50 * design.shape[1])
        out = np.zeros(x.shape[1] + own.shape[1])
        out[list(self.columns)] = coef[: len(self.columns)]
        half = coef[len(self.columns) :].reshape(2, -1)
        out[[x.shape[1] + c for c in picked]] = half[0] - half[1]
        return out


def _variants(k: int, n_own: int, n: int) -> list[_Variant]:
    """The candidates leave-one-out chooses among, for k sources and n networks to fit on:
    each source alone and all mixed, each with 0-3 levels of own terms; none with more
    coefficients than networks."""
    subsets = [(d,) for d in range(k)] + ([tuple(range(k))] if k > 1 else [])
    out = [_Variant(s, own) for s in subsets for own in range(4 if n_own > 2 else 3)]
    return [v for v in out if v.size(n_own) <= n]


def _loo_errors(variant: _Variant, x: np.ndarray, own: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared log error of `variant` predicting each network from the others."""
    rows, errors = np.hstack([x, own]), np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        coef = variant.fit(x[keep], own[keep], y[keep])
        errors[i] = math.log(max(float(rows[i] @ coef), 1e-9) / y[i]) ** 2
    return errors


def _choose(x: np.ndarray, own: np.ndarray, y: np.ndarray) -> _Variant:
    """The candidate with the fewest coefficients whose leave-one-out error is within one
    standard error of the best one's (the one-SE rule: with ten networks, the best of twenty
    candidates is partly the luckiest)."""
    candidates = _variants(x.shape[1], own.shape[1], len(y) - 1)
    errors = [_loo_errors(v, x, own, y) for v in candidates]
    best = int(np.argmin([e.mean() for e in errors]))
    # (plus a hair, so that fits exact up to rounding count as ties)
    bar = errors[best].mean() + errors[best].std(ddof=1) / math.sqrt(len(y)) + 1e-12
    fits = [(v.size(own.shape[1]), e.mean(), i) for i, (v, e) in enumerate(zip(candidates, errors))]
    return candidates[min(f for f in fits if f[1] <= bar)[2]]


def _nested_predictions(x: np.ndarray, own: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each network predicted by a fit that neither saw it nor chose its variant with it."""
    rows, out = np.hstack([x, own]), np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        variant = _choose(x[keep], own[keep], y[keep])
        out[i] = rows[i] @ variant.fit(x[keep], own[keep], y[keep])
    return out


def _kernels(networks: Sequence[Sequence[OpSpec]]) -> list[int]:
    """The depthwise kernel sizes the networks use, when they use more than one (with one,
    its cost is the per-op cost's and the sources' to tell apart)."""
    found = sorted({op.kernel for ops in networks for op in ops if op.type in BLOCK_TYPES})
    return found if len(found) > 1 else []


def _check(samples: Sequence[Sample], sources: Sequence[Source], space: str) -> None:
    if not sources:
        raise LatkitError(
            f"transfer needs other devices of {space} in the store (profiled, or imported "
            "with import-lut, import-measurements or import-networks); it found none"
        )
    if len(samples) < MIN_TRANSFER_NETWORKS:
        raise LatkitError(
            f"transfer needs at least {MIN_TRANSFER_NETWORKS} timed networks of the device "
            f"(one to check each fit on), it has {len(samples)}: time more with "
            "`latkit profile --networks N`"
        )


def fit_transfer(
    samples: Sequence[Sample],
    sources: Sequence[Source],
    *,
    space: SearchSpace | None = None,
    seed: int = 0,
    device: str = "",
) -> tuple[LatencyPredictor, TransferReport]:
    """F for a device timed only on whole networks, from the other devices' F (module doc).

    Returns the predictor (its network interval calibrated on nested leave-one-out residuals)
    and a report: held-out metrics, each source's share of the predicted latency, the variant
    chosen, and notes on what the data cannot support. F's fitted range is `space`'s ops (the
    sources measured them, and the networks were drawn from it), else the timed networks'
    ops: a network beyond it gets no interval (`LatencyPredictor.with_model`)."""
    _check(samples, sources, "this space" if space is None else space.name)
    networks = [list(ops) for ops, _ in samples]
    y = np.array([float(latency) for _, latency in samples])
    x = np.column_stack([s.price(networks) for s in sources])
    kernels = _kernels(networks)
    own = _own_per_network(networks, kernels)
    guesses = np.maximum(_nested_predictions(x, own, y), 1e-9)
    variant = _choose(x, own, y)
    coef = variant.fit(x, own, y)
    weights, own_coef = coef[: len(sources)], coef[len(sources) :]
    interval = Interval.calibrate(log_residuals(guesses, y), "networks (leave-one-out)")
    model = TransferModel(
        [
            (s.predictor.for_network(networks[0]), s.batch, w)
            for s, w in zip(sources, weights)
            if w > 0
        ],
        kernels,
        own_coef[1:],
    )
    predictor = LatencyPredictor(family=model.name, seed=seed, device=device).with_model(
        model, network_interval=interval, fitted_on=_fitted_on(networks, space)
    )
    predictor.overhead_ms = float(own_coef[0]) + model.overhead_ms
    held = metrics.report(guesses, y)
    low, high = interval.bounds(guesses)
    held["coverage"] = metrics.coverage(low, high, y)
    parts = (x * weights).sum(axis=0)
    names = ["overhead", "per_op", *(f"depthwise_{k}x{k}_per_mmac" for k in kernels)]
    report = TransferReport(
        len(y),
        held,
        {s.name: float(v / parts.sum()) for s, v in zip(sources, parts) if v > 0},
        variant.describe([s.name for s in sources], weights),
        _notes(interval, len(y)),
        dict(zip(names, map(float, own_coef))),
    )
    predictor.stamp(source="transfer", n_networks=len(y), transfer=report.to_json())
    return predictor, report


def _fitted_on(networks: Sequence[Sequence[OpSpec]], space: SearchSpace | None) -> list[OpSpec]:
    timed = [op for ops in networks for op in ops]
    return timed if space is None else [*timed, *space.distinct_ops(batch=timed[0].batch)]


def _notes(interval: Interval, n: int) -> tuple[str, ...]:
    notes = []
    if not interval.finite:
        need = math.ceil(interval.level / (1 - interval.level))
        notes.append(
            f"the {interval.level:.0%} interval is unbounded: leave-one-out needs at least "
            f"{need} networks to calibrate it, there are {n}"
        )
    if n < 10:
        notes.append(f"accuracy from {n} left-out networks: a rough estimate")
    return tuple(notes)


def _pick_features(networks: Sequence[Sequence[OpSpec]], sources: Sequence[Source]) -> np.ndarray:
    """Where each network lies, standardised: its typical price (the space's range), each
    source's price relative to the others' (where the devices disagree), and the terms a new
    device fits on its own (ops, depthwise work per kernel size); without sources, its cost
    components (what a networks-alone fit sees) and those terms."""
    own = np.log1p(_own_per_network(networks, _kernels(networks))[:, 1:])
    if sources:
        x = np.log(np.column_stack([s.price(networks) for s in sources]))
        x -= x.mean(axis=0)
        level = x.mean(axis=1, keepdims=True)
        features = np.hstack([level, x - level, own])
    else:
        comps = np.log1p(np.array([components(list(ops)).sum(axis=0) for ops in networks]))
        features = np.hstack([comps, own])
    spread = features.std(axis=0)
    return features[:, spread > 1e-12] / spread[spread > 1e-12]


def pick_networks(
    space: SearchSpace,
    sources: Sequence[Source],
    n: int,
    *,
    batch: int = 1,
    seed: int = 0,
    first: Sequence[Network] = (),
    avoid: Collection[tuple[OpSpec, ...]] = (),
) -> list[Network]:
    """`n` networks of `space` worth timing on a new device, spread over the space's range and
    over where the other devices disagree: farthest-first traversal (the k-center greedy), from
    `first` (networks already timed: kept, in their order) or else the pool network nearest all
    others, each next pick the one farthest from every pick so far. Deterministic and nested:
    the first k of n picks are the k picks. Networks whose ops are in `avoid` (held out for
    validation) are never picked."""
    first = [Network(tuple(op.replace(batch=batch) for op in net.ops), net.name) for net in first]
    taken = {net.ops for net in first} | set(avoid)
    pool = first + [
        net
        for net in (
            Network(tuple(op.replace(batch=batch) for op in net.ops), net.name)
            for _, net in space.sample_networks(max(POOL, n), seed=seed)
        )
        if net.ops not in taken
    ]
    features = _pick_features([net.ops for net in pool], sources)
    squared = (features**2).sum(axis=1)
    distance = np.sqrt(np.maximum(squared[:, None] + squared[None] - 2 * features @ features.T, 0))
    chosen = list(range(min(len(first), n))) or [int(np.argmin(distance.sum(axis=1)))]
    nearest = distance[chosen].min(axis=0)
    while len(chosen) < min(n, len(pool)):
        nearest[chosen] = -np.inf
        chosen.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, distance[chosen[-1]])
    return [pool[i] for i in chosen]
