"""Fault injection on the test bed: `gpusched bench chaos` and tests/benchmarks/chaos.

Each case (benchmarks.chaos.cases) brings one fault to a running ChaosBed (a test bed
cluster of its own) and returns what was checked, what was found and its figures.
"""
