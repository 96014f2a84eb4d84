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
# Never replace the torch that is there (e.g. by a dependency of an extra such as lightning):
# pin the installed version as a constraint.
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
if torch_version="$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("torch"))' 2>/dev/null)"; then
  echo "torch==$torch_version" >"$constraints"
fi
"${pip[@]}" install -e ".[dev]" -c "$constraints"
# microsoft's mup (the tests of gdscope.integrations.mup): without its declared dependencies,
# since it asks for torchvision, whose registry build does not load beside a CPU-only torch
# (and breaks lightning's import); what mup imports (numpy, pandas, pyyaml) the dev extra has.
"${pip[@]}" install --no-deps "mup>=1.0"
