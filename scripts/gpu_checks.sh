#!/usr/bin/env bash
# Everything gdscope checks on a GPU, in one call: the CUDA tests, then every benchmark at paper
# sizes, then (where JAX and neural-tangents import) gdscope's NTK against neural-tangents' on the
# same GPU. Usage: bash scripts/gpu_checks.sh OUTDIR  (writes OUTDIR/tests.log, OUTDIR/bench.jsonl,
# OUTDIR/peers.jsonl). Needs torch with CUDA and gdscope importable (pip install -e . or
# PYTHONPATH=src).
set -uo pipefail
out="${1:?usage: scripts/gpu_checks.sh OUTDIR}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/src" PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
  | tee "$out/device.txt" || exit 1
# only the files that hold gpu-marked tests: a file importing an optional package the GPU image
# lacks must not stop the collection of the others
gpu_files=$(grep -l "mark.gpu" tests/test_*.py)
python3 -m pytest -q -m gpu -p no:cacheprovider $gpu_files 2>&1 | tee "$out/tests.log"
for script in benchmarks/bench_ntk.py benchmarks/bench_hessian.py benchmarks/bench_ensemble.py; do
  (cd benchmarks && python3 "../$script" --device cuda) 2>>"$out/bench.err" | tee -a "$out/bench.jsonl"
done
# neural-tangents 0.6.5 imports on current JAX only through benchmarks/_peers_compat.py: look, don't import
if python3 -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ('jax', 'neural_tangents'))))"; then
  (cd benchmarks && python3 bench_peers.py --device cuda --only ntk --rounds 7) \
    2>>"$out/bench.err" | tee "$out/peers.jsonl"
else
  echo "gpu_checks: jax or neural-tangents not importable: no neural-tangents comparison" \
    | tee -a "$out/bench.err"
fi
