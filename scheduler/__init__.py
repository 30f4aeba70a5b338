"""gpusched scheduler: the pure placement core, the extender, the node agent."""
