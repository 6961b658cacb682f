"""Run under torchrun by test_train: train a tiny model with DDP on CPU (gloo) and dump each
replica's weights and first-step batch so the test can compare them."""

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import TINY  # noqa: E402

from dforce.config import load_config  # noqa: E402
from dforce.synthetic.train import build_model, training_data  # noqa: E402
from dforce.train import loop, train  # noqa: E402

out = Path(sys.argv[1])
rank = int(os.environ["RANK"])
torch.set_num_threads(1)
cfg = load_config(None, TINY + ["train.steps=150", "train.checkpoint_every=50", "train.lr=3e-3", "train.seed=1"])
torch.manual_seed(rank)  # different initial weights per process: DDP must broadcast rank 0's
data = training_data(cfg.data)
model = build_model(cfg, data)
if rank == 0:
    save_file({k: v.clone().contiguous() for k, v in model.state_dict().items()}, str(out / "init0.safetensors"))
order = loop.BatchOrder(data, cfg.train.batch_size, loop.distributed.Process(rank, 2, rank), cfg.train.seed)
(out / f"batches{rank}.json").write_text(json.dumps(order(0).tolist()))
train(model, data, cfg.train, out / "run", progress=False)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
