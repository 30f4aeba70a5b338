"""The end-to-end benchmarks on the test bed: scheduling throughput (schedule) and the
autoscaler daemon against a real Prometheus (autoscale)."""
