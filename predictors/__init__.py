"""Latency predictors: F(op) in ms for one device, fitted from op tables or whole networks.

`LatencyPredictor` is the estimator; `fit_device` fits and saves one from the measurement store,
`fit_networks` from whole-network timings, `fit_transfer` from a few of them and other devices'
F (`pick_networks` chooses which to time), `latkit.predictors.lut` reads and writes the
ProxylessNAS and once-for-all LUT formats, and `latkit.predictors.report` writes the
predicted-vs-measured CSV and plot. Checking F on networks timed on a device is a workflow:
`latkit.workflows.validate`.
"""

from latkit.predictors.fit import FitReport, fit_device, load_predictor, predictor_path
from latkit.predictors.lut import export_lut, import_lut, import_measurements, read_lut
from latkit.predictors.models import MODELS
from latkit.predictors.networks import fit_networks, load_network_samples
from latkit.predictors.predictor import LatencyPredictor, PredictorMismatchWarning
from latkit.predictors.transfer import Source, TransferReport, fit_transfer, pick_networks

__all__ = [
    "MODELS",
    "FitReport",
    "LatencyPredictor",
    "PredictorMismatchWarning",
    "Source",
    "TransferReport",
    "export_lut",
    "fit_device",
    "fit_networks",
    "fit_transfer",
    "import_lut",
    "import_measurements",
    "load_network_samples",
    "load_predictor",
    "pick_networks",
    "predictor_path",
    "read_lut",
]
