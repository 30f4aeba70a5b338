"""Kubernetes object names, checked before they go into an API path.

A name from a caller (an extender /bind, a custom resource) is hostile until checked:
`kube-system/pods/y` as a namespace, or `..`, would walk the request to another object.
Names are checked as the API server validates them, then every path segment is
percent-quoted as well, so that one missed check still cannot add a segment.
"""
from __future__ import annotations

import re
from urllib.parse import quote

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class InvalidName(ValueError):
    """Not a valid Kubernetes name; the message says which and why."""


def is_dns_label(name: object) -> bool:
    """RFC 1123 label, as namespaces are: 1..63 of [a-z0-9-], alphanumeric at both ends."""
    return isinstance(name, str) and len(name) <= 63 and _LABEL.fullmatch(name) is not None


def is_dns_subdomain(name: object) -> bool:
    """RFC 1123 subdomain, as pod and node names are: 1..253, dot-separated labels."""
    return isinstance(name, str) and len(name) <= 253 and _SUBDOMAIN.fullmatch(name) is not None


def segment(part: str) -> str:
    """One path segment, percent-quoted: a '/' in it stays inside it."""
    return quote(part, safe="")


def namespaced_path(prefix: str, namespace: str, resource: str, name: str = "", sub: str = "") -> str:
    """`{prefix}/namespaces/{namespace}/{resource}[/{name}[/{sub}]]` with the namespace a DNS
    label and the name a DNS subdomain; InvalidName otherwise."""
    if not is_dns_label(namespace):
        raise InvalidName(f"namespace {namespace[:80]!r} is not a DNS-1123 label")
    path = f"{prefix}/namespaces/{segment(namespace)}/{segment(resource)}"
    if name or sub:
        if not is_dns_subdomain(name):
            raise InvalidName(f"{resource} name {name[:80]!r} is not a DNS-1123 subdomain")
        path += f"/{segment(name)}"
    if sub:
        path += f"/{segment(sub)}"
    return path
