"""The agent's Dynamic Resource Allocation driver `gpu.gpusched.io` (contract.DRA_DRIVER):
what makes "which pod holds which GPU" an API record that the node enforces
(docs/ownership.md, issue 13).

Modules, one per outside system and the pure rules between them:
  devices    GPUs -> the ResourceSlice that publishes them (pure)
  slices     the Kubernetes adapter that writes this node's ResourceSlice
  claims     a ResourceClaim's allocation -> the GPUs and memory caps to prepare (pure)
  cdi        the CDI spec a prepared claim becomes (pure) and its files on the node
  plugin     the kubelet's gRPC services: DRAPlugin v1 and plugin registration
  kubeletapi the kubelet's protos, vendored, and their generated stubs
"""
