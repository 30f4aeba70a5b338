"""Kubernetes object names as the API server defines them (apimachinery's validation).

Every name the autoscaler puts into an API path comes from a tenant's object
(``scaleTargetRef.name``) or from an API answer; both are checked here before a path
is built, so ``../../tenant-b/deployments/victim`` never reaches a request.
Pure: no I/O.
"""
from __future__ import annotations

import re
from typing import Final

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
