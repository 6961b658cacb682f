"""Benchmarks for dforce (run from the repository root, e.g. ``python -m benchmarks.core``)."""
