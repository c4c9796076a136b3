"""Benchmarks: op-level and whole-net timings, run as modules (python -m benchmarks.<name>);
recorded runs live in benchmarks/results/."""
