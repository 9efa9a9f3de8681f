"""Benchmarks: `python -m bench.fanout`, `bench.coldstart`, `bench.calls`, `bench.cost`, `bench.e2e`.

See docs/performance.md.
"""
