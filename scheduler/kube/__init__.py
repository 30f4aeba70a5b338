"""The Kubernetes adapter shared by the daemons: raw list+watch, clients, Events."""
