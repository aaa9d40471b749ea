"""Benchmarks for the conversation engine (see bench/README.md).

`bench.autopilot` is a resident robot that completes any procedure; it is also
used by the test suite (procedures/tests/test_autopilot.py), so it must stay
free of Django. `bench.engine` is the benchmark itself: `python -m bench.engine`.
"""
