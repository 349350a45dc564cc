"""Benchmarks: measurements that take minutes, run by `make bench*` from a checkout, never by the
timed tests. Not in the wheel (like pipelines/): `python -m benchmarks.<name>` from the repo root."""
