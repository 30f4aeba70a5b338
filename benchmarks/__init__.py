"""gpusched benchmarks: the local test bed, the trace simulator and the benches."""
