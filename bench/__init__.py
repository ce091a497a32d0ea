"""Benchmarks: each bench_<area>.py prints tables; `python -m bench [area ...]` runs them (BENCH_QUICK=1: short)."""
