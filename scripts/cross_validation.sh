#!/usr/bin/env bash
# The cross experiment's choices, made on validation seeds only (docs/compositional.md): each
# Diffusion Forcing candidate below sampled with each scheduling, 300 trajectories per context
# mode, records in results/compositional/validation/<candidate>-<scheduling>/.
# Candidates (trained with `dforce train configs/cross_df.yaml <overrides> --out runs/cross_df_<name>`;
# runs/cross_tf and runs/cross_fs are the presets configs/cross_tf.yaml and configs/cross_fs.yaml):
#   (every candidate but w5 also sets data.whole_paths=0, and the first three diffusion.clean_prob=0)
#   mins    diffusion.weighting=min_snr                                  (the library default)
#   x0u     diffusion.weighting=uniform diffusion.target=x0
#   vu      diffusion.weighting=uniform
#   c5      diffusion.weighting=min_snr diffusion.clean_prob=0.5
#   c5u     diffusion.weighting=uniform diffusion.clean_prob=0.5
#   trc5    model.backbone=transformer model.depth=2 diffusion.clean_prob=0.5   (uniform weighting)
#   w5      c5u with data.whole_paths=0.5                                       (= configs/cross_df.yaml)
# The baselines below were measured twice: trained without whole paths (fs-*, tf-*) and with them
# (fs_w5-*, tf_w5-*, = configs/cross_{fs,tf}.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
DFORCE=${DFORCE:-.venv/bin/dforce}
for candidate in ${CANDIDATES:-mins x0u vu c5 c5u trc5 w5}; do
  for scheduling in ${SCHEDULINGS:-full_sequence autoregressive}; do
    "$DFORCE" eval compositional --checkpoints "df=runs/cross_df_$candidate/model" --split val \
      --scheduling "$scheduling" --samples 300 --no-plot \
      --out "results/compositional/validation/$candidate-$scheduling"
  done
done

# The baselines' own choices, same seeds: how the full-sequence model is conditioned, and the
# teacher-forcing model (sampled autoregressively, as it was trained). runs/cross_{fs,tf} were
# trained with data.whole_paths=0, runs/cross_{fs,tf}_w5 with the presets as they are.
if [ -z "${CANDIDATES:-}" ]; then
  for fs in fs fs_w5; do
    for conditioning in commit replacement; do
      "$DFORCE" eval compositional --checkpoints "fs=runs/cross_$fs/model" --split val --conditioning "$conditioning" \
        --samples 300 --no-plot --out "results/compositional/validation/$fs-$conditioning"
    done
  done
  for tf in tf tf_w5; do
    "$DFORCE" eval compositional --checkpoints "tf=runs/cross_$tf/model" --split val --samples 300 --no-plot \
      --out "results/compositional/validation/$tf-autoregressive"
  done
fi
