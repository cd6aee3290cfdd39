#!/usr/bin/env bash
# Installs the project and its dependencies into the current Python environment.
# torch goes first and only where none is installed: pinned, so that a machine with a local
# CPU wheel of that version takes it; a torch you installed yourself (CUDA, ROCm, ...) is kept.
# Either way the package's unpinned `torch` requirement is then met and pip fetches no
# further torch or CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[test,plot]"
