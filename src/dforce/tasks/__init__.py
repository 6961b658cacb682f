"""Thin applications composing the core: synthetic-sequence runs, the demo (planning,
forecasting and video tasks build on the same pieces)."""
