"""gpusched autoscaler: the pure replica policy and its Kubernetes and Prometheus adapters."""
