"""Fleet simulator: simulated vLLM replicas and DCGM GPU metrics for a real Prometheus.

- ``benchmarks.fleet.model``: the pure queueing model (no I/O, ``now`` a parameter, seeded)
  and its load sources (constant rate, step/burst schedules, request traces).
- ``benchmarks.fleet.exporter``: ``FleetSimulator``, which runs the model against the pods
  of real Deployments and serves their metrics to Prometheus.
"""
