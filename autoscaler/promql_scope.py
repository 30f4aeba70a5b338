"""Confine a tenant's PromQL to its own namespace, as prom-label-proxy does: every
vector selector of the query gets the matcher ``namespace="<ns>"`` added. Matchers of
one selector are ANDed, so the tenant's own matchers (``namespace=~".*"`` included)
can only narrow the result further, never widen it.

No well-kept PromQL parser is installable here (the Go parser is Prometheus's own), so
this is a small lexer that follows Prometheus's lexing rules (identifiers, keywords
case-insensitive, strings with their escapes, numbers, durations, Inf/NaN) and finds
the selectors by the grammar's only two shapes: a metric name that is not a call,
keyword or aggregation, and a ``{...}`` block. Anything it does not recognise (a
comment, a character outside PromQL's lexicon, unbalanced brackets, a
function that reads other series on its own) is refused with a reason, never sent.
Pure: no I/O.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final

MAX_QUERY: Final = 4096  # the CRD's maxLength


class UnsafeQuery(ValueError):
    """A query that cannot be confined to one namespace; the message says why."""


@dataclass(frozen=True)
class _Tok:
    kind: str  # ident, number, string, punct, op, space
    text: str
    start: int


_TOKEN: Final = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
  | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)[a-zA-Z0-9_]*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|==|!=|<=|>=|[-+*/%^<>=@])
  | (?P<punct>[{}()\[\],])
""", re.VERBOSE)

_BINARY_KEYWORDS: Final = frozenset({"and", "or", "unless", "atan2"})
_LABEL_LIST_KEYWORDS: Final = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_NUMBER_WORDS: Final = frozenset({"inf", "nan"})
# functions that read series the query did not select (experimental info() joins info metrics)
_REFUSED_FUNCTIONS: Final = frozenset({"info"})
# [5m], [1h30m], [5m:1m], [5m:]: durations only (no experimental duration arithmetic)
_RANGE: Final = re.compile(r"\[\s*\d[0-9a-zA-Z.]*\s*(?::\s*(?:\d[0-9a-zA-Z.]*)?\s*)?\]")


def _tokens(query: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None:
            ch = query[pos]
            what = "a comment" if ch == "#" else f"character {ch!r}"
            raise UnsafeQuery(f"{what} at offset {pos} is not accepted in a promql signal")
        kind = m.lastgroup or ""
        out.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    return out


def _next(toks: list[_Tok], i: int) -> int:
    """Index of the first non-space token at or after i (len(toks) if none)."""
    while i < len(toks) and toks[i].kind == "space":
        i += 1
    return i


def _skip_group(toks: list[_Tok], i: int, close: str, allowed: frozenset[str], what: str) -> int:
    """From the opening token at i, the index just past its closing ``close``; only
    ``allowed`` token kinds may appear inside."""
    j = i + 1
    while j < len(toks):
        t = toks[j]
        if t.kind == "punct" and t.text == close:
            return j + 1
        if t.kind not in allowed and not (t.kind == "punct" and t.text == ","):
            raise UnsafeQuery(f"unexpected {t.text!r} in {what} at offset {t.start}")
        j += 1
    raise UnsafeQuery(f"unclosed {what} at offset {toks[i].start}")


def scope_query(query: str, namespace: str, label: str = "namespace") -> str:
    """``query`` with ``label="namespace"`` ANDed into every vector selector. Raises
    UnsafeQuery when the query cannot be rewritten safely."""
    if len(query) > MAX_QUERY:
        raise UnsafeQuery(f"query longer than {MAX_QUERY} characters")
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", label):
        raise UnsafeQuery(f"label {label!r} is not a label name")
    matcher = f"{label}={json.dumps(namespace)}"
    toks = _tokens(query)
    out: list[str] = []
    depth = 0  # parentheses, to refuse an unbalanced query
    i = 0
    selectors = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "ident":
            word = t.text.lower()
            nxt = _next(toks, i + 1)
            nt = toks[nxt] if nxt < len(toks) else None
            if word in _LABEL_LIST_KEYWORDS:
                out.append(t.text)
                if nt is not None and nt.kind == "punct" and nt.text == "(":
                    end = _skip_group(toks, nxt, ")", frozenset({"ident", "string", "space"}), "a label list")
                    out.extend(x.text for x in toks[i + 1:end])
                    i = end
                    continue
                if word in ("group_left", "group_right"):
                    i += 1
                    continue
                raise UnsafeQuery(f"{t.text} without a label list at offset {t.start}")
            if word in _BINARY_KEYWORDS or word in _NUMBER_WORDS or word in ("bool", "offset"):
                out.append(t.text)
                i += 1
                continue
            is_call = nt is not None and nt.kind == "punct" and nt.text == "("
            is_aggregation = nt is not None and nt.kind == "ident" and nt.text.lower() in ("by", "without")
            if is_call or is_aggregation:
                if word in _REFUSED_FUNCTIONS:
                    raise UnsafeQuery(f"{t.text}() reads series the query does not select")
                out.append(t.text)
                i += 1
                continue
            # a metric name: its selector is the {...} that follows, or none
            out.append(t.text)
            selectors += 1
            if nt is not None and nt.kind == "punct" and nt.text == "{":
                out.extend(x.text for x in toks[i + 1:nxt])
                i = _selector_block(toks, nxt, out, matcher)
            else:
                out.append("{" + matcher + "}")
                i += 1
            continue
        if t.kind == "punct" and t.text == "{":
            selectors += 1
            i = _selector_block(toks, i, out, matcher)
            continue
        if t.kind == "punct" and t.text == "}":
            raise UnsafeQuery(f"unmatched '}}' at offset {t.start}")
        if t.kind == "punct" and t.text == "[":
            end = _skip_group(toks, i, "]", frozenset({"number", "ident", "space"}), "a range")
            text = "".join(x.text for x in toks[i:end])
            if not _RANGE.fullmatch(text):
                raise UnsafeQuery(f"range {text[:40]!r} at offset {t.start} is not a duration or subquery range")
            out.append(text)
            i = end
            continue
        if t.kind == "punct" and t.text == "]":
            raise UnsafeQuery(f"unmatched ']' at offset {t.start}")
        if t.kind == "punct" and t.text == "(":
            depth += 1
        elif t.kind == "punct" and t.text == ")":
            depth -= 1
            if depth < 0:
                raise UnsafeQuery(f"unmatched ')' at offset {t.start}")
        out.append(t.text)
        i += 1
    if depth != 0:
        raise UnsafeQuery("unbalanced parentheses")
    return "".join(out)


def _selector_block(toks: list[_Tok], i: int, out: list[str], matcher: str) -> int:
    """Copy the ``{...}`` starting at i with ``matcher`` added; return the index past '}'.
    Each item must be ``name op "value"`` or a quoted metric name: anything else (Prometheus
    3's ``or`` between matcher groups, which would leave a group without our matcher) is
    refused."""
    j = i + 1
    items: list[list[_Tok]] = [[]]
    while j < len(toks):
        t = toks[j]
        if t.kind == "punct" and t.text == "}":
            break
        if t.kind == "punct" and t.text == ",":
            items.append([])
        elif t.kind != "space":
            items[-1].append(t)
        j += 1
    else:
        raise UnsafeQuery(f"unclosed selector at offset {toks[i].start}")
    if not items[-1]:
        items.pop()  # a trailing comma (or an empty block)
    for item in items:
        kinds = [t.kind for t in item]
        ok = kinds == ["string"] or (
            len(item) == 3 and kinds[0] in ("ident", "string") and kinds[2] == "string"
            and item[1].kind == "op" and item[1].text in ("=", "!=", "=~", "!~"))
        if not ok:
            text = " ".join(t.text for t in item)[:60]
            raise UnsafeQuery(f"selector item {text!r} at offset {toks[i].start} is not name=\"value\"")
    body = ",".join("".join(t.text for t in item) for item in items)
    out.append("{" + body + ("," if body else "") + matcher + "}")
    return j + 1
