"""Benchmarks for flowmusic-async: `python -m benchmarks [--quick]`.

Honest scripts, not timed tests: every competing strategy runs in the same invocation, each in
its own process against its own freshly started simulator (same seed, same workload), and the
output is ratios against this library plus the machine and the versions that produced them.
"""
