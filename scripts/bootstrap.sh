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
# The peers extra (tests/test_peers.py, and mup for the tests of gdscope.integrations.mup), read
# from the metadata just installed. neural-tangents, curvlinops-for-pytorch and microsoft's mup
# go in without their declared dependencies: neural-tangents asks for tensorflow and tf2jax (its
# TF route, never imported), curvlinops (through backpack-for-pytorch) and mup for torchvision,
# whose registry build does not load beside a CPU-only torch (and breaks lightning's import).
# The rest of the extra lists what those three import and goes in with its dependencies (jax is
# the CPU build: jax[cpu]); mup's imports (numpy, pandas, pyyaml) the dev extra has.
mapfile -t peers < <("$venv/bin/python" - <<'PY'
from importlib.metadata import requires

for requirement in requires("gdscope") or []:
    spec, _, marker = requirement.partition(";")
    if marker.replace(" ", "").replace("'", '"') == 'extra=="peers"':
        print(spec.strip())
PY
)
without_deps='^(neural-tangents|curvlinops-for-pytorch|mup)[^a-z0-9_.-]'
mapfile -t peers_with_deps < <(printf '%s\n' "${peers[@]}" | grep -Eiv "$without_deps")
mapfile -t peers_without_deps < <(printf '%s\n' "${peers[@]}" | grep -Ei "$without_deps")
if [ "${#peers_without_deps[@]}" -ne 3 ]; then
  echo "bootstrap.sh: expected 3 no-deps peers in gdscope[peers], found: ${peers_without_deps[*]}" >&2
  exit 1
fi
"${pip[@]}" install -c "$constraints" "${peers_with_deps[@]}"
"${pip[@]}" install --no-deps "${peers_without_deps[@]}"
