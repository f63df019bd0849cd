#!/usr/bin/env bash
# Creates (idempotently) the virtual environment that runs RecBole 1.2.1 for the
# side-by-side benchmark, and prints its python path as the last line.
# Usage: benchmarks/recbole_env.sh [VENV_DIR]   (default: <repo>/.bench/recbole-venv)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo_root/.bench/recbole-venv}"
py="$venv/bin/python"

# Pins (see shared/docs/peers.md):
# - torch==2.13.0 is the CPU wheel on local disk; any other version pulls GBs of CUDA.
# - ray (<=2.6.3, required by RecBole) imports pkg_resources, which setuptools 81+ no
#   longer ships; torch 2.13.0 requires setuptools>=77.0.3, so peers.md's "<70" cannot
#   be resolved together with it: 77.0.3..80.x satisfies both (ray only warns).
# - ray.tune uses np.bool8 (numpy<2); pandas>=2.2 wants numpy 2 (pandas<2.2).
# - psutil is a declared RecBole dependency; pinned here only to make it explicit.
pins=(
  "torch==2.13.0"
  "recbole==1.2.1"
  "numpy<2"
  "pandas<2.2"
  "setuptools>=77.0.3,<81"
  "psutil"
)

# The import check is what "works" means; run with the venv's python only if it exists.
works() {
  [[ -x "$py" ]] && "$py" - <<'EOF' >/dev/null 2>&1
import torch, recbole, numpy, pandas, psutil
from recbole.quick_start import load_data_and_model  # pulls in ray/hyperopt paths too
from recbole.model.sequential_recommender import SASRec
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert recbole.__version__ == "1.2.1", recbole.__version__
assert int(numpy.__version__.split(".")[0]) < 2
EOF
}

if works; then
  echo "recbole venv already works: $venv" >&2
else
  echo "setting up recbole venv at $venv" >&2
  mkdir -p "$(dirname "$venv")"
  [[ -x "$py" ]] || python3 -m venv "$venv"
  "$py" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
  if ! works; then
    echo "recbole venv at $venv still fails to import RecBole" >&2
    exit 1
  fi
fi

echo "$py"
