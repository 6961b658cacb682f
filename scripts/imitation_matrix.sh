#!/usr/bin/env bash
# The imitation corruption matrix (docs/imitation.md), in two processes of one thread each
# (df | the baselines), then assembled from the cached cells into <out>/matrix.json and
# matrix.png: 500 episodes per cell on seeds 40000, the record's protocol. About 70 minutes
# of evaluation on one CPU thread in all; cells already cached are read, not rerun.
#   scripts/imitation_matrix.sh              the shipped policies (zoo names), the project's records
#   TRAIN=1 scripts/imitation_matrix.sh      train the three presets into runs/ first (about 25 minutes
#                                            each on one thread) and write outputs/imitation/
set -euo pipefail
cd "$(dirname "$0")/.."
DFORCE=${DFORCE:-.venv/bin/dforce}
export OMP_NUM_THREADS=1
models=()
protocol=(--episodes 500 --seed 40000)
where=(--record)
if [ "${TRAIN:-0}" = 1 ]; then
  for m in df teacher_forcing memoryless; do
    "$DFORCE" train "configs/imitation_$m.yaml" --out "runs/imitation_$m" --no-progress &
    models+=("$m=runs/imitation_$m/model")
  done
  wait
  models=(--checkpoints "${models[@]}")
  where=(--out "${OUT:-outputs/imitation}")
fi
"$DFORCE" eval imitation --matrix "${models[@]}" "${protocol[@]}" --methods df "${where[@]}" --no-plot --no-progress &
"$DFORCE" eval imitation --matrix "${models[@]}" "${protocol[@]}" --methods teacher_forcing,memoryless "${where[@]}" \
  --no-plot --no-progress &
wait
"$DFORCE" eval imitation --matrix "${models[@]}" "${protocol[@]}" "${where[@]}" --no-progress     # every cell from the cache
