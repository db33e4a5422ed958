#!/usr/bin/env bash
# Run where pip reaches a registry: downloads, into .whl/ (git-ignored), the wheels that a bare GPU
# machine (Python 3.12, torch, onnxruntime, pandas, scikit-learn, pyyaml, rich, typer, no registry)
# lacks for latkit's GPU path. bench/gpu_check.sh installs them from there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY_VERSION:-3.12}
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.7.0 typing-inspection==0.4.2
ls .whl
