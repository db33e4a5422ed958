"""F as one Python object: load a device's predictor once, then ask it about the networks a user
already has.

```python
import latkit

f = latkit.load_predictor("pixel7-cpu", db="data/latkit.sqlite", data_dir="data")
r = f.predict(model, input_shape=(1, 3, 224, 224))  # a torch.nn.Module
r.latency_ms, r.low_ms, r.high_ms, r.ops, r.unmapped
```

A torch module is exported to ONNX (eval mode, TorchScript exporter) and mapped to op specs by
`latkit.graphs`, exactly as `latkit predict --onnx` maps a file; an ONNX path, its bytes or a
ModelProto are mapped directly, and a list of op specs (or table keys) is taken as it is. A
network with nodes no op spec describes is refused, with the list, unless `allow_unmapped`:
then F answers for the mapped part and the answer lists the rest (`unmapped`). A module's or an
ONNX model's N must be the batch the device times at (a dynamic N takes it), as for `latkit
predict --onnx`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from latkit.devices import DeviceConfig
from latkit.errors import LatkitError
from latkit.graphs import check_batch, read_model, require_mapped
from latkit.ops import OpSpec, from_key
from latkit.predictors.fit import DATA_DIR
from latkit.predictors.fit import load_predictor as load_fitted
from latkit.predictors.predictor import LatencyPredictor
from latkit.store import MeasurementStore
from latkit.workflows.predict import Named, Prediction, answer, device_config, stored_timing


class DevicePredictor:
    """One device's F, answering for torch modules, ONNX models and op lists (`predict`).

    Parameters:
        device: the device's name.
        predictor: its fitted F.
        db: a store whose whole-network timings are shown beside F's answers (`measured_ms`).
        batch: the batch the device times at (its device file's); default: that of F's
            measurements. A module's or an ONNX model's N must be it.
    """

    def __init__(
        self,
        device: str,
        predictor: LatencyPredictor,
        db: str | Path | None = None,
        batch: int | None = None,
    ) -> None:
        self.device = device
        self.predictor = predictor
        self.db = db
        self.batch = batch or int(predictor.meta.get("batch", 1))

    def network(
        self,
        model: Any,
        input_shape: Sequence[int] | None = None,
        *,
        name: str | None = None,
        allow_unmapped: bool = False,
    ) -> Named:
        """`model` as the op specs F answers for (see the module's docstring)."""
        if isinstance(model, list | tuple):
            if not model:
                raise LatkitError("an empty op list: give op specs or table keys to predict")
            ops = tuple(op if isinstance(op, OpSpec) else from_key(str(op)) for op in model)
            return Named(name or "network", "ops", ops)
        mapped = read_model(model, input_shape, name, batch=self.batch)
        require_mapped(mapped, allow_unmapped, mapped.name)
        check_batch(mapped, self.batch, self.device)
        source = str(model) if isinstance(model, str | Path) else type(model).__name__
        return Named(mapped.name, source, mapped.ops, mapping=mapped)

    def predict(
        self,
        model: Any,
        input_shape: Sequence[int] | None = None,
        *,
        name: str | None = None,
        allow_unmapped: bool = False,
    ) -> Prediction:
        """F's answer for `model`: `latency_ms` with its interval (`low_ms`, `high_ms`), each
        op's share and source (`ops`: table, model, or model outside the fitted range), the
        stored end-to-end timing if `db` holds one (`measured_ms`), and `unmapped`.

        `model` is a torch.nn.Module (needs `input_shape`, N x C x H x W), an ONNX path, bytes
        or ModelProto (`input_shape` sets a dynamic input's size), or a list of op specs."""
        network = self.network(model, input_shape, name=name, allow_unmapped=allow_unmapped)
        return answer(self.predictor, network, self._measured(network.ops))

    def _measured(self, ops: Sequence[OpSpec]) -> float | None:
        if self.db is None or not Path(self.db).exists():
            return None
        with MeasurementStore(self.db) as store:
            return stored_timing(store, self.device, ops, self.predictor.meta.get("env_id"))

    def __repr__(self) -> str:
        return f"DevicePredictor({self.device!r})"


def load_predictor(
    device: str | Path | DeviceConfig,
    db: str | Path | None = None,
    data_dir: str | Path = DATA_DIR,
) -> DevicePredictor:
    """The fitted F of `device` (a device name, or its device file) from `data_dir`, as a
    `DevicePredictor`; a missing one is an error that says how to make it."""
    config = device_config(device)
    name = config.name if config else str(device)
    predictor = load_fitted(name, Path(data_dir), device_file=config.source if config else None)
    return DevicePredictor(name, predictor, db, config.batch_size if config else None)
