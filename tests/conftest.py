"""Test-wide settings: tiny models run fastest single-threaded, and two intra-op threads
fighting other processes for 2 cores can slow small ops down a hundredfold."""

import os

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
