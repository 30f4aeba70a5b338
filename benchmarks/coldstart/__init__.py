"""`gpusched bench coldstart`: a multi-model fleet whose replicas start and stop on GPU
nodes with model caches; time to ready follows where the weights come from.

Modules: `catalogue` (the models and what each replica asks for), `cache` (a node's
host-memory and disk tiers, LRU), `workload` (seeded replica churn), `sim` (the
discrete-event simulation; gpusched's placement is scheduler.core byte for byte),
`report` (JSON, markdown, plots), `cli`. Only `report` needs matplotlib and only the
CLI needs tqdm.
"""
