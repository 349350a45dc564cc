"""Benchmarks: measurements that take minutes, run by `make bench*`, never by the timed tests."""
