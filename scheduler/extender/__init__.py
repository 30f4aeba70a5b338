"""The kube-scheduler extender: HTTP verbs over an in-memory snapshot kept by informers."""
