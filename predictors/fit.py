"""Fit a device's predictor from its rows in the measurement store, and find it again later.

The held-out figures are honest: the families are compared, the kept ones picked and the
intervals calibrated on the training rows only; the test rows are then predicted by the models
alone (no table hits). The saved predictor is selected and refit the same way on every row, with
every row in its table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from latkit import metrics
from latkit.errors import LatkitError
from latkit.ops import OP_FIELDS, OpSpec, from_key
from latkit.predictors.models import make_model
from latkit.predictors.predictor import LatencyPredictor
from latkit.predictors.selection import registered_families
from latkit.store import MeasurementStore

DATA_DIR = Path("data")
#: provenance copied from the store's environment columns into the predictor's meta
ENV_META = ("runtime", "runtime_version", "threads", "host", "device_model", "env_id")
#: whole-network timings that never feed a fit: `latkit validate` scores F on them
HELD_OUT_ORIGINS: tuple[str, ...] = ("validate",)


@dataclass(frozen=True)
class FitReport:
    """What `fit_device` did: the saved predictor, its held-out figures and the comparison."""

    predictor: LatencyPredictor
    n_train: int
    n_test: int
    test: dict[str, float]
    path: Path
    comparison: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.predictor.device,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "test": self.test,
            "networks": self.predictor.meta.get("network_cv", {}),
            "family": self.predictor.meta.get("family"),
            "network_terms": asdict(self.predictor.terms),
            "comparison": self.comparison,
            "path": str(self.path),
        }


def predictor_path(device_name: str, data_dir: Path = DATA_DIR) -> Path:
    """Where a device's predictor lives: `data/<device>/predictor.json`."""
    return Path(data_dir) / device_name / "predictor.json"


def _profile_hint(device_name: str, device_file: str | None = None) -> str:
    if device_file:
        return device_file
    guess = Path("device_configs") / f"{device_name}.yaml"
    return str(guess) if guess.exists() else f"<device file of {device_name}>"


def load_predictor(
    device_name: str,
    data_dir: Path = DATA_DIR,
    expect: dict[str, Any] | None = None,
    device_file: str | None = None,
) -> LatencyPredictor:
    """The fitted predictor of a device; a missing one is an error that says how to make it.

    Warns (`PredictorMismatchWarning`) when the file was fitted for another device or for values
    in `expect` that differ (runtime version, batch size, ...).
    """
    path = predictor_path(device_name, data_dir)
    if not path.exists():
        extra = "" if Path(data_dir) == DATA_DIR else f" --data-dir {data_dir}"
        raise LatkitError(
            f"no predictor for device {device_name!r} at {path}: run "
            f"`latkit profile --device {_profile_hint(device_name, device_file)}` and then "
            f"`latkit fit --device {device_name}{extra}`"
        )
    return LatencyPredictor.load(path, expect={"device": device_name, **(expect or {})})


def ops_of(frame: pd.DataFrame) -> list[OpSpec]:
    """Op specs from the op-field columns of a store dataframe."""
    return [OpSpec.from_dict(row) for row in frame[list(OP_FIELDS)].to_dict("records")]


def latest_env_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the environment measured most recently (a re-profile after a runtime update
    must not be mixed with the old numbers)."""
    latest = frame.sort_values("measured_at")["env_id"].iloc[-1]
    return frame[frame["env_id"] == latest]


def op_frame(store: MeasurementStore, device: str) -> pd.DataFrame:
    """The device's non-zero op rows of its latest environment; an error says how to make some."""
    frame = store.dataframe(device)
    if frame.empty:
        raise LatkitError(
            f"no measurements for device {device!r} in {store.path}: run "
            f"`latkit profile --device {_profile_hint(device)} --db {store.path}` "
            "(or `latkit import-lut` / `latkit import-measurements`) first"
        )
    rows = latest_env_rows(frame)
    return rows[rows["type"] != "zero"]


def env_of(rows: pd.DataFrame) -> dict[str, Any]:
    """The environment columns a predictor's meta records, from its op rows."""
    env = {k: _plain(rows[k].iloc[-1]) for k in ENV_META}
    env["batch"] = int(rows["batch"].iloc[-1])
    return env


def op_rows(store: MeasurementStore, device: str) -> tuple[list[OpSpec], np.ndarray, dict]:
    """(ops, median latencies, environment columns) of the device's latest environment."""
    rows = op_frame(store, device)
    return ops_of(rows), rows["median_ms"].to_numpy(dtype=float), env_of(rows)


def _plain(value: Any) -> Any:
    """A numpy scalar as plain Python, and a missing (NaN) value as None, for JSON."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value


def stored_networks(
    store: MeasurementStore,
    device: str,
    env_id: str | None = None,
    exclude_origins: Sequence[str] = HELD_OUT_ORIGINS,
) -> list[tuple[tuple[OpSpec, ...], float]]:
    """Whole-network timings of a device (optionally of one environment) as (ops, median ms),
    leaving out those timed for `exclude_origins` (by default `validate`'s, which must stay
    unseen by the fit they judge)."""
    frame = store.networks(device)
    if not frame.empty:
        if env_id is not None:
            frame = frame[frame["env_id"] == env_id]
        frame = frame[~frame["origin"].isin(list(exclude_origins))]
    return [
        (
            tuple(
                from_key(k, "proxylessnas", batch=int(row.batch)) for k in json.loads(row.ops_json)
            ),
            float(row.median_ms),
        )
        for row in frame.itertuples()
    ]


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split; the test side is empty for test_fraction 0."""
    if not 0 <= test_fraction < 1:
        raise LatkitError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    if test_fraction > 0 and n - n_test < 2:
        raise LatkitError(
            f"only {n} rows: too few to hold out {test_fraction:.0%}; use --test-fraction 0"
        )
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def held_out(
    ops: Sequence[OpSpec],
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
    unstable: np.ndarray | None = None,
) -> tuple[LatencyPredictor, dict[str, float], dict[str, dict[str, float]]]:
    """(F fitted on the training rows, its test metrics with interval coverage, the selection
    scores and test metrics of every family alone and of `auto`). Test rows are predicted by the
    models alone: a table hit would make them trivially exact."""
    train_ops, test_ops = [ops[i] for i in train], [ops[i] for i in test]
    flags = None if unstable is None else unstable[train]
    trained = LatencyPredictor(seed=seed).fit(train_ops, y[train], flags)
    families = registered_families()
    comparison = {family: dict(trained.comparison_.get(family, {})) for family in families}
    comparison["auto"] = {}
    if len(test) == 0:
        return trained, {}, comparison
    for family in families:
        model = make_model(family, seed).fit(train_ops, y[train])
        comparison[family].update(metrics.report(model.predict(test_ops), y[test]))
    low, high = trained.predict_interval(test_ops)
    test_metrics = metrics.report(trained.predict(test_ops), y[test])
    test_metrics["coverage"] = metrics.coverage(low, high, y[test])
    comparison["auto"] = dict(test_metrics)
    return trained, test_metrics, comparison


def fit_device(
    store: MeasurementStore,
    device: str,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    data_dir: Path = DATA_DIR,
) -> FitReport:
    """Fit, evaluate and save the predictor of `device` from its op rows in `store`.

    When the store also holds whole-network timings of the same environment (the calibration
    networks `latkit profile` times, the searches' results; never `validate`'s), the network
    terms are fitted from them per space (`LatencyPredictor.fit_network_terms`), and the network
    interval calibrated on them; otherwise a network is the sum of its ops.
    """
    rows = op_frame(store, device)
    ops, y = ops_of(rows), rows["median_ms"].to_numpy(dtype=float)
    unstable = rows["unstable"].fillna(0).to_numpy(dtype=bool)
    train, test = split_indices(len(ops), test_fraction, seed)
    _, test_metrics, comparison = held_out(ops, y, train, test, seed, unstable)
    predictor = op_predictor(store, device, rows, seed)
    path = predictor.save(predictor_path(device, data_dir))
    return FitReport(predictor, len(train), len(test), test_metrics, path, comparison)


def op_predictor(
    store: MeasurementStore, device: str, rows: pd.DataFrame, seed: int = 0
) -> LatencyPredictor:
    """F of `device` on its op `rows` (`op_frame`), every row in its table, with network terms
    from the stored networks of their environment: what `fit_device` saves, left unsaved (a
    transfer fit prices with other devices' F without rewriting their files)."""
    ops, y, env = ops_of(rows), rows["median_ms"].to_numpy(dtype=float), env_of(rows)
    unstable = rows["unstable"].fillna(0).to_numpy(dtype=bool)
    predictor = LatencyPredictor(seed=seed, device=device).fit(ops, y, unstable)
    predictor.fit_network_terms(stored_networks(store, device, env["env_id"]), seed)
    return predictor.stamp(**env, source="ops", n_ops=len(ops))
