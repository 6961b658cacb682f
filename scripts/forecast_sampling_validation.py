"""Choose a trained forecaster's sampling on the validation windows (never the test windows).

Sampling is not trained, so the same checkpoints can be scored under several schedules.
For each seed's selected checkpoint (``RUNS/<dataset>/<method>/seed<s>/best``) and each
variant below, draws 100 paths per validation window and reports the CRPS-sum (numpy
implementation, equal to GluonTS's), mean over seeds. Writes
``results/forecasting/<dataset>-<method>-sampling-validation.json``.

    python scripts/forecast_sampling_validation.py --dataset exchange_rate_nips --config configs/exchange.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from dforce.config import load_config
from dforce.results import write_result
from dforce.forecasting.metrics import crps_sum
from dforce.forecasting.model import Forecaster, prepare


def variants(prediction_length: int) -> dict[str, dict]:
    return {
        "autoregressive, stabilization 0": dict(scheduling="autoregressive", chunk=1, stabilization=0),
        "autoregressive, stabilization 20": dict(scheduling="autoregressive", chunk=1, stabilization=20),
        "autoregressive, stabilization 100": dict(scheduling="autoregressive", chunk=1, stabilization=100),
        "full sequence": dict(scheduling="full_sequence", chunk=prediction_length, stabilization=0),
        "pyramid, slope 1": dict(scheduling="pyramid", chunk=prediction_length, slope=1.0, stabilization=0),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--method", default="df")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--runs", type=Path, default=Path("runs/forecasting"))
    args = p.parse_args()
    tic = time.time()
    fd = prepare(load_config(args.config).forecast)
    P = fd.spec.prediction_length
    histories = fd.val_histories()
    truth = np.stack([h[:, -P:].T for h in histories])
    observed = [h[:, :-P] for h in histories]
    scores = {}
    for name, settings in variants(P).items():
        per_seed = []
        for seed in range(args.seeds):
            f = Forecaster.from_pretrained(args.runs / args.dataset / args.method / f"seed{seed}" / "best")
            f.model.sampling_cfg = dataclasses.replace(f.model.sampling_cfg, **settings)
            per_seed.append(crps_sum(truth, f.sample(observed, fd.series.start, args.samples, seed=seed)))
        scores[name] = {"mean": float(np.mean(per_seed)), "per_seed": [float(s) for s in per_seed],
                        "sampling": settings}
        print(f"{name}: {scores[name]['mean']:.5f}", flush=True)
    out = Path("results/forecasting") / f"{args.dataset}-{args.method}-sampling-validation.json"
    write_result(out, {"val_crps_sum": scores}, wall_time_s=time.time() - tic, seeds=list(range(args.seeds)),
                 command=["python", *sys.argv], validation_windows=fd.val_windows, samples=args.samples)
    print(out)


if __name__ == "__main__":
    main()
