#!/usr/bin/env bash
# What produced RESULTS.md's "Segmentation" tables on a lent machine with 16 cores and an H200: every run of
# benchmarks/segmentation.py at once, each in its own process with one torch thread (14 CPU processes: per data
# set airscene's 3 seeds and Slot Attention's seed 0), and both models on the GPU beside them. The data sets were
# made here first (the `data` commands in segmentation.py's DATA_SETS, into benchmarks/out/segmentation/NAME/data)
# and carried there; so was the slot-attention package, as wheels in .whl/ (that machine has no network):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl \
#       slot-attention==1.5.2 einx==0.4.3 vector-quantize-pytorch==1.32.0 frozendict==2.5.1 loguru==0.7.3 \
#       torch-einops-utils==0.2.0 einops==0.8.2
# Then, there: `bash benchmarks/segmentation_h200.sh cpu` (5.5 minutes a run, tetrominoes on the GPU too) and
# `bash benchmarks/segmentation_h200.sh gpu` (3.5 minutes, the other two data sets on the GPU); back here,
# `python benchmarks/segmentation.py --data NAME --out DIR --minutes M [--device cuda --seeds 0] --report`.
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MPLBACKEND=Agg
S=benchmarks/out/segmentation
OUT=${OUT:-benchmarks/out/segmentation-logs}; mkdir -p "$OUT"
run() {  # data set, out, minutes, extra flags...
  python3 benchmarks/segmentation.py --data "$1" --out "$2" --minutes "$3" --threads 1 --no-report "${@:4}"
}
if [ "${1:-cpu}" = cpu ]; then
  for d in tetrominoes multi-dsprites clevr; do
    run "$d" "$S" 5.5 --concurrent 14 --models airscene --parallel 3 > "$OUT/$d.log" 2>&1 &
    run "$d" "$S" 5.5 --concurrent 14 --models slot-attention --seeds 0 > "$OUT/$d-sa.log" 2>&1 &
  done
  mkdir -p /tmp/gpu/tetrominoes && cp -r "$S/tetrominoes/data" /tmp/gpu/tetrominoes/
  run tetrominoes /tmp/gpu 5.5 --concurrent 14 --device cuda --seeds 0 --parallel 2 > "$OUT/gpu.log" 2>&1 &
else
  for d in multi-dsprites clevr; do
    mkdir -p "/tmp/gpu2/$d" && cp -r "$S/$d/data" "/tmp/gpu2/$d/"
    run "$d" /tmp/gpu2 3.5 --concurrent 4 --device cuda --seeds 0 --parallel 2 > "$OUT/$d-gpu.log" 2>&1 &
  done
fi
wait
