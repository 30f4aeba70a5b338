"""The gpusched node agent: what a GPU node has (GPUs through NVML, the model cache
on its disks), published on its Node object and as Prometheus metrics, plus model
prefetch on request.

Modules, by capability:
  nvml      the only module that imports pynvml; GPU inventory as plain data
  cache     scan model cache directories (Hugging Face hub and plain layouts)
  publish   when to write the Node (pure) and the Kubernetes adapter that writes it
  prefetch  copy a model from a model store into the cache, atomically
  metrics   Prometheus collectors (DCGM-compatible GPU names, gpusched_*)
  daemon    one tick = read, scan, publish, prefetch; the loop around it
  cli       `gpusched agent`
"""
