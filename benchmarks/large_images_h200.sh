#!/usr/bin/env bash
# What trained the runs behind RESULTS.md's "Large images" tables on a lent machine with 16 CPU cores (the GPU
# unused): every run of benchmarks/large_images.py at once, each its own process on one torch thread. The
# kinds' files and tiles were made here first (`prepare` and `import_part`, into benchmarks/out/large-images)
# and carried there; back here, `python benchmarks/large_images.py --report --seeds ...` wrote the tables.
#   bash benchmarks/large_images_h200.sh sweep    # seed 0 of each variant tried (15 runs)
#   bash benchmarks/large_images_h200.sh seeds    # seeds 1 and 2 of the chosen variants
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MPLBACKEND=Agg
OUT=${OUT:-benchmarks/out/large-images-logs}; mkdir -p "$OUT"
MINUTES=${MINUTES:-4}
run() {  # kind, seeds, variants...
  python3 benchmarks/large_images.py --kinds "$1" --seeds $2 --minutes "$MINUTES" --parallel 16 --no-report \
    --variants "${@:3}" > "$OUT/$1-${2// /}.log" 2>&1 &
}
if [ "${1:-sweep}" = sweep ]; then
  run coins 0 base background anneal-background anneal-background-turns
  run nuclei 0 base turns anneal anneal-turns prior-30 sd-0.2
  run synthetic 0 base turns anneal background anneal-background
else
  run coins "1 2" "${COINS:-anneal-background}"
  run nuclei "1 2" "${NUCLEI:-anneal}"
  run synthetic "1 2" "${SYNTHETIC:-anneal}"
fi
wait
tail -n 3 "$OUT"/*.log
