"""Benchmark suite for authbridge (not run by CI; see docs/benchmarks.md)."""
