#!/usr/bin/env bash
# One-shot GPU check for a bare NVIDIA machine with only this repository and no package registry.
# Needs the wheels from bench/fetch_gpu_wheels.sh in .whl/ (carry that folder along).
# Prints one line per figure. Budget: under 8 minutes on one H100.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/latkit-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

# 1. install: missing wheels into a private site folder, then latkit itself without dependencies.
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/latkit-site .whl/*.whl
    export PYTHONPATH=/tmp/latkit-site:${PYTHONPATH:-}
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . \
    || export PYTHONPATH=$PWD:$PYTHONPATH
latkit() { python3 -c 'from latkit.cli import main; main()' "$@"; }
python3 -c 'import torch; print("gpu:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| cuda", torch.version.cuda, "| cudnn", torch.backends.cudnn.version())'

# 2. the GPU tests (and the shared timing-loop tests they build on), and the search on CUDA
python3 -m pytest -q -p no:cacheprovider tests/test_torch_profiler.py tests/test_timing.py
python3 -m pytest -q -p no:cacheprovider tests/test_search_distributed.py -k "cuda or meta"

# 3. profile proxyless-mobile at batch 8, fp32, without and with CUDA graphs
DB="$OUT/gpu.sqlite"
latkit profile --device device_configs/cuda-gpu8.yaml --db "$DB" --json "$OUT/eager.json"
latkit profile --device device_configs/cuda-gpu8-graphs.yaml --db "$DB" --json "$OUT/graphs.json"

# 4. the three published networks end to end, beside the sum of their ops
ARCH_DIR=tests/data/archs/proxylessnas
ARCHS=()
for n in proxyless_mobile proxyless_cpu proxyless_gpu; do ARCHS+=(--arch "$ARCH_DIR/$n.config"); done
latkit time-network --device device_configs/cuda-gpu8.yaml --db "$DB" "${ARCHS[@]}" --json "$OUT/networks.json"

# 5. a short search trained on the GPU: proxyless-mobile on digits upsampled to 224, 1 + 1 epochs,
#    fp32 and bf16 autocast, against F fitted on the profile of step 3
latkit fit --device cuda-gpu8 --db "$DB" --data-dir "$OUT/data"
python3 - "$OUT" <<'PY'
import sys, torch
from pathlib import Path
from latkit.devices import load_device
from latkit.search.trainer import SearchConfig
from latkit.workflows.search import run_search
out = Path(sys.argv[1])
device = load_device("device_configs/cuda-gpu8.yaml")
for amp in (None, "bf16"):
    config = SearchConfig(target_ms=5.0, epochs=1, warmup_epochs=1, batch_size=64)
    torch.cuda.reset_peak_memory_stats()
    result = run_search(device, config, space="proxyless-mobile", dataset="digits",
                        final_epochs=0, measure=False, data_dir=out / "data",
                        out_dir=out / f"search-{amp or 'fp32'}", train_device="cuda", amp=amp)
    steps = 2 * (1079 // 64)
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"FIGURE search on {result.train_device} ({amp or 'fp32'}): {steps / result.search_s:.2f} "
          f"steps/s (weight steps, arch steps and per-epoch validation included), "
          f"peak GPU memory {peak:.2f} GiB, arch {' '.join(result.names)}")
PY

# 6. one line per figure
python3 - "$OUT" <<'PY'
import json, sqlite3, sys
out = sys.argv[1]
eager, graphs = (json.load(open(f"{out}/{n}.json")) for n in ("eager", "graphs"))
for name, s in (("eager", eager), ("cuda-graphs", graphs)):
    print(f"FIGURE {name}: ops={s['ops']} median_cv={s['median_cv']:.4f} "
          f"wall/timed={s['wall_s'] / max(s['timed_s'], 1e-9):.2f}")
con = sqlite3.connect(f"{out}/gpu.sqlite")
rows = {d: dict(con.execute("SELECT key, median_ms FROM measurements WHERE device=?", (d,)))
        for d in ("cuda-gpu8", "cuda-gpu8-graphs")}
common = rows["cuda-gpu8"].keys() & rows["cuda-gpu8-graphs"].keys()
e, g = (sum(rows[d][k] for k in common) for d in ("cuda-gpu8", "cuda-gpu8-graphs"))
print(f"FIGURE cuda-graphs speed-up over {len(common)} ops (sum of medians): {e / g:.2f}x")
for n in json.load(open(f"{out}/networks.json"))["networks"]:
    print(f"FIGURE network {n['network']}: measured {n['measured_ms']:.3f} ms, "
          f"sum of ops {n['sum_of_ops_ms']:.3f} ms, ratio {n['measured_ms'] / n['sum_of_ops_ms']:.2f}")
PY
