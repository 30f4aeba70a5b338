"""The extender micro-benchmark: filter and prioritize over HTTP, with a baseline."""
