"""Kubernetes object names as the API server validates them (apimachinery's DNS-1123
rules), and API paths built from them.

A name from a tenant (an InferenceAutoscaler's ``scaleTargetRef.name``) or a caller (an
extender /bind) is hostile until checked: ``kube-system/pods/y`` as a namespace, or
``../../tenant-b/deployments/victim`` as a name, would walk the request to another
object. Names are checked here, then every path segment is percent-quoted as well, so
that one missed check still cannot add a segment. Pure: no I/O; the extender, the
autoscaler and the CRD's pattern share it.
"""
from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote

# DNS-1123 label: namespaces (and most names that must be one path segment).
LABEL_MAX: Final = 63
LABEL_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# DNS-1123 subdomain: Deployments, pods, Nodes, Events, custom objects.
SUBDOMAIN_MAX: Final = 253
SUBDOMAIN_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# The same as the CRD's OpenAPI ``pattern`` (anchored there, as OpenAPI patterns are not).
SUBDOMAIN_PATTERN: Final = "^" + SUBDOMAIN_RE.pattern + "$"


def _show(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def subdomain_error(name: object) -> str | None:
    """Why ``name`` is not a DNS-1123 subdomain, or None when it is one."""
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not name.strip():
        return "must not be empty"
    if len(name) > SUBDOMAIN_MAX:
        return f"must be at most {SUBDOMAIN_MAX} characters, got {len(name)}"
    if not SUBDOMAIN_RE.fullmatch(name):
        return (f"{_show(name)} is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', "
                f"starting and ending with a letter or digit)")
    return None


def label_error(name: object) -> str | None:
    """Why ``name`` is not a DNS-1123 label (a namespace name), or None when it is one."""
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not name.strip():
        return "must not be empty"
    if len(name) > LABEL_MAX:
        return f"must be at most {LABEL_MAX} characters, got {len(name)}"
    if not LABEL_RE.fullmatch(name):
        return f"{_show(name)} is not a DNS-1123 label (lowercase letters, digits and '-')"
    return None


def is_subdomain(name: object) -> bool:
    return subdomain_error(name) is None


def is_label(name: object) -> bool:
    return label_error(name) is None


class InvalidName(ValueError):
    """Not a valid Kubernetes name; the message says which and why."""


def segment(part: str) -> str:
    """One path segment, percent-quoted: a '/' in it stays inside it."""
    return quote(part, safe="")


def namespaced_path(prefix: str, namespace: str, resource: str, name: str = "", sub: str = "") -> str:
    """`{prefix}/namespaces/{namespace}/{resource}[/{name}[/{sub}]]` with the namespace a DNS
    label and the name a DNS subdomain; InvalidName otherwise."""
    if not is_label(namespace):
        raise InvalidName(f"namespace {namespace[:80]!r} is not a DNS-1123 label")
    path = f"{prefix}/namespaces/{segment(namespace)}/{segment(resource)}"
    if name or sub:
        if not is_subdomain(name):
            raise InvalidName(f"{resource} name {name[:80]!r} is not a DNS-1123 subdomain")
        path += f"/{segment(name)}"
    if sub:
        path += f"/{segment(sub)}"
    return path
