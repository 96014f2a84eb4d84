#!/usr/bin/env bash
# Create the virtual environment and install gdscope with its test tools.
# torch: where a local CPU wheel of torch 2.13.0 is on pip's find-links (as on the project's
# machines), take it, so that no multi-GB CUDA build is pulled; anywhere else pip resolves
# torch>=2.4 from the registry as usual.
set -euo pipefail
venv="${1:-.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --quiet --disable-pip-version-check)
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  if "${pip[@]}" install --no-index --no-deps "torch==2.13.0" 2>/dev/null; then
    "${pip[@]}" install "torch==2.13.0"
  fi
fi
"${pip[@]}" install -e ".[dev]"
