#!/usr/bin/env bash
# Every forecasting record in results/forecasting/, as recorded. Trained runs are kept in
# runs/forecasting/<dataset>/<method>-<key>/seed<s> and reused, so a rerun only samples and scores.
#   bash scripts/forecasting_backtests.sh            # all datasets
#   bash scripts/forecasting_backtests.sh etth1      # one
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
DFORCE=${DFORCE:-.venv/bin/dforce}
datasets=${*:-exchange_rate_nips etth1 etth2 vic_elec_daily us_employment}
for ds in $datasets; do
  # 36 held-out windows before the test windows, every method, 5 seeds, paired against df
  $DFORCE eval forecasting --dataset "$ds" --backtest 36 --seeds 5 --record --no-progress
done
if [[ " $datasets " == *" exchange_rate_nips "* ]]; then
  # the paper's protocol (true previous values at every step) with the same models, on the 5 test windows
  $DFORCE eval forecasting --dataset exchange_rate_nips --backtest 36 --protocol paper --seeds 5 \
    --methods df,random_walk --record --no-progress
fi
