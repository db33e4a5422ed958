"""Latency predictors: F(op) in ms for one device, fitted from op tables or whole networks.

`LatencyPredictor` is the estimator; `fit_device` fits and saves one from the measurement store,
`fit_networks` from whole-network timings, `latkit.predictors.lut` reads and writes the
ProxylessNAS and once-for-all LUT formats, and `latkit.predictors.report` writes the
predicted-vs-measured CSV and plot. Checking F on networks timed on a device is a workflow:
`latkit.workflows.validate`.
"""

from latkit.predictors.fit import FitReport, fit_device, load_predictor, predictor_path
from latkit.predictors.lut import export_lut, import_lut, import_measurements, read_lut
from latkit.predictors.models import MODELS
from latkit.predictors.networks import fit_networks, load_network_samples
from latkit.predictors.predictor import LatencyPredictor, PredictorMismatchWarning

__all__ = [
    "MODELS",
    "FitReport",
    "LatencyPredictor",
    "PredictorMismatchWarning",
    "export_lut",
    "fit_device",
    "fit_networks",
    "import_lut",
    "import_measurements",
    "load_network_samples",
    "load_predictor",
    "predictor_path",
    "read_lut",
]
