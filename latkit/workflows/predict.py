"""How fast is this network on that device? F's answer for networks read from files.

`predict` reads ProxylessNAS `net.config`s, once-for-all MobileNetV3 configs and subnet choices
(`--arch`), ONNX files (`--onnx`, mapped to op specs by `latkit.graphs`) and the JSONL of
`latkit fit --networks`, and answers for each network with the device's predictor: the latency,
its interval, each op's share (a measured table entry or the model's answer), and the
whole-network timing the store already holds for it, if any. Nothing is timed: this is the
question a search asks millions of times, asked once from the command line.

Every network is answered at the batch the device times at (that of its device file or of the
config the store registered for it, else that of its predictor's measurements), as `profile` and
`time-network` time it: arch and JSONL networks are built at it, and an ONNX network's N must be
it, since op keys do not carry the batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latkit.devices import DeviceConfig, is_device_file, load_device
from latkit.errors import LatkitError
from latkit.ops import OpSpec
from latkit.predictors.fit import DATA_DIR, load_predictor
from latkit.predictors.networks import read_network_lines
from latkit.predictors.predictor import LatencyPredictor
from latkit.records import arch_id
from latkit.spaces import SearchSpace, load_arch
from latkit.store import MeasurementStore

if TYPE_CHECKING:  # latkit.graphs imports onnx: only --onnx pays for it
    from latkit.graphs import MappedNetwork


@dataclass(frozen=True)
class OpShare:
    """One op of a predicted network: its latency, share of the network, and where it came from
    (`table`: measured on the device; `model`: F's model, inside or outside the fitted range)."""

    key: str
    ms: float
    share: float
    source: str

    def to_json(self) -> dict[str, Any]:
        share = None if math.isnan(self.share) else self.share
        return {"key": self.key, "ms": self.ms, "share": share, "source": self.source}


@dataclass(frozen=True)
class Prediction:
    """F's answer for one network, and the stored end-to-end timing of it when there is one."""

    name: str
    source: str
    predicted_ms: float
    low_ms: float
    high_ms: float
    level: float
    interval_source: str
    measured_ms: float | None
    ops: tuple[OpShare, ...]
    #: for a network read from ONNX: how its nodes mapped (F answers for the mapped ones only)
    mapping: MappedNetwork | None = None

    @property
    def latency_ms(self) -> float:
        """F's network latency (the same as `predicted_ms`)."""
        return self.predicted_ms

    @property
    def unmapped(self) -> tuple[str, ...]:
        """The nodes of an ONNX network that no op spec describes, as "NAME (OP): why"."""
        return self.mapping.unmapped if self.mapping else ()

    def to_json(self, with_ops: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "source": self.source,
            "predicted_ms": self.predicted_ms,
            "interval": {
                "level": self.level,
                "low_ms": self.low_ms,
                "high_ms": _finite(self.high_ms),
                "calibrated_on": self.interval_source,
            },
            "measured_ms": self.measured_ms,
        }
        if self.mapping is not None:
            out["nodes"] = self.mapping.to_json()
        if with_ops:
            out["ops"] = [op.to_json() for op in self.ops]
        return out


def _finite(value: float) -> float | None:
    """JSON has no infinity: an unbounded interval end is null."""
    return value if value != float("inf") else None


@dataclass(frozen=True)
class Named:
    """A network to predict: name, where it was read, its ops, and a latency the file gave."""

    name: str
    source: str
    ops: tuple[OpSpec, ...]
    given_ms: float | None = None
    mapping: MappedNetwork | None = None


def read_networks(
    archs: Sequence[str | Path] = (),
    networks: str | Path | None = None,
    *,
    device: str,
    batch: int | None = None,
    space: SearchSpace | str | None = None,
    input_hw: int | None = None,
    onnx: Sequence[str | Path] = (),
    input_shape: Sequence[int] | None = None,
    allow_unmapped: bool = False,
) -> list[Named]:
    """The networks of `archs` files, of `onnx` files (refused with their unmapped nodes unless
    `allow_unmapped`), then of the `networks` JSONL, in input order. `batch` is the one `device`
    times at, when known: archs and JSONL networks are built at it (else at 1), and an ONNX
    network's N must be it (a dynamic N takes it; `input_shape` gives N, C, H, W)."""
    out = [
        Named(net.name, str(path), tuple(net.ops))
        for path in archs
        for net in [load_arch(path, batch=batch or 1, space=space, input_hw=input_hw)]
    ]
    if onnx:
        from latkit.graphs import check_batch, read_onnx_files

        mapped = read_onnx_files(onnx, input_shape, allow_unmapped, batch=batch)
        if batch is not None:
            mapped = [check_batch(m, batch, device) for m in mapped]
        out += [Named(m.name, m.label, m.ops, mapping=m) for m in mapped]
    if networks is not None:
        for line in read_network_lines(networks, batch or 1, need_latency=False):
            out.append(Named(line.name, str(networks), line.ops, line.latency_ms))
    if not out:
        raise LatkitError(
            "nothing to predict: give --arch NET.config, --onnx MODEL.onnx and/or --networks "
            "NETS.jsonl"
        )
    return out


def answer(
    predictor: LatencyPredictor, network: Named, measured_ms: float | None = None
) -> Prediction:
    """F's answer for one network, op by op."""
    whole = predictor.network_answer(network.ops)
    explained = predictor.explain(network.ops)
    contributions = predictor.contribution(network.ops)
    total = whole.predicted_ms or math.nan  # a network priced at 0 has no shares
    shares = [
        OpShare(a.op.key, float(c), float(c) / total, a.source)
        for a, c in zip(explained, contributions)
    ]
    if predictor.overhead_ms:
        overhead = predictor.overhead_ms
        shares.append(OpShare("(per-network overhead)", overhead, overhead / total, "networks"))
    return Prediction(
        network.name,
        network.source,
        whole.predicted_ms,
        whole.low_ms,
        whole.high_ms,
        whole.level,
        whole.interval_source,
        measured_ms if measured_ms is not None else network.given_ms,
        tuple(shares),
        network.mapping,
    )


def stored_timing(
    store: MeasurementStore, device: str, ops: Sequence[OpSpec], env_id: str | None
) -> float | None:
    """The median of the device's stored end-to-end timing of exactly these ops (in the
    predictor's environment when it has one, else the latest)."""
    frame = store.networks(device)
    if frame.empty:
        return None
    rows = frame[frame["arch_id"] == arch_id(ops)]
    if env_id:
        rows = rows[rows["env_id"] == env_id]
    return float(rows["median_ms"].iloc[-1]) if len(rows) else None


def device_config(device: str | Path | DeviceConfig) -> DeviceConfig | None:
    """`device` as a config when it is one or a device file (a .yaml or .yml path, or any file
    that exists); None when it is a device's name."""
    if isinstance(device, DeviceConfig):
        return device
    return load_device(device) if is_device_file(device) else None


def _device(device: str | DeviceConfig, store: MeasurementStore | None) -> tuple[str, int | None]:
    """(name, batch size if known) of a device file, config, or name (whose batch is that of
    the config the store holds for it, if any)."""
    config = device_config(device)
    if config is not None:
        return config.name, config.batch_size
    known = store.device(device) if store is not None else None
    if known and known["config"]:
        return device, int(known["config"].get("batch_size", 1))
    return device, None


def _at_batch(network: Named, device: str, batch: int) -> Named:
    """`network` at the device's batch, learnt only once its predictor is loaded: arch and JSONL
    networks are rebuilt at it, while an ONNX network's N must already be it."""
    if network.mapping is not None:
        from latkit.graphs import check_batch

        check_batch(network.mapping, batch, device)
        return network
    if batch == 1:
        return network
    return dataclasses.replace(network, ops=tuple(op.replace(batch=batch) for op in network.ops))


def predict(
    device: str | DeviceConfig,
    archs: Sequence[str | Path] = (),
    networks: str | Path | None = None,
    *,
    db: str | Path | None = None,
    data_dir: Path = DATA_DIR,
    space: SearchSpace | str | None = None,
    input_hw: int | None = None,
    onnx: Sequence[str | Path] = (),
    input_shape: Sequence[int] | None = None,
    allow_unmapped: bool = False,
) -> list[Prediction]:
    """Predict every network of `archs`, `onnx` and `networks` on `device` (a device file, its
    config, or a device name whose predictor is under `data_dir`), one `Prediction` each, in
    input order (see `read_networks`). With `db` (an existing store), stored whole-network
    timings are looked up too."""
    store = MeasurementStore(db) if db is not None and Path(db).exists() else None
    try:
        name, batch = _device(device, store)
        # the inputs first, so a wrong file is named before a missing predictor is
        nets = read_networks(
            archs,
            networks,
            device=name,
            batch=batch,
            space=space,
            input_hw=input_hw,
            onnx=onnx,
            input_shape=input_shape,
            allow_unmapped=allow_unmapped,
        )
        source = device.source if isinstance(device, DeviceConfig) else None
        predictor = load_predictor(name, Path(data_dir), device_file=source)
        if batch is None:  # a device known by name alone: F's measurements have its batch
            nets = [_at_batch(net, name, int(predictor.meta.get("batch", 1))) for net in nets]
        env_id = predictor.meta.get("env_id")
        return [
            answer(
                predictor,
                net,
                stored_timing(store, name, net.ops, env_id) if store is not None else None,
            )
            for net in nets
        ]
    finally:
        if store is not None:
            store.close()
