"""Environments used for evaluation. Heavy dependencies (mujoco, gymnasium) load on first use."""
