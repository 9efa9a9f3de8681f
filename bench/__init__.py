"""Benchmarks: `python -m bench.fanout`, `bench.coldstart`, `bench.calls`, `bench.e2e` (see README)."""
