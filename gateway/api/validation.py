"""Checks every request passes before any handler sees it, whatever the endpoint.

PostgreSQL cannot store NUL in text and UTF-8 cannot carry a lone surrogate (what
`json.loads` makes of `"\\ud800"`); a value with either would fail deep inside a query or
while encoding an answer. So the text of every decoded JSON body (keys and values), path
parameter and query parameter is checked once, here, and refused as PARAM_ERROR. JSON is
also bounded in depth before anything walks it recursively (hashing, canonical JSON).
"""

from __future__ import annotations

import json
import re

from gateway.domain_errors import InvalidField

JSON_DEPTH_MAX = 32  # WeChat's deepest request (a split's receivers) is 3 levels
FIELD_NAME_CHARS_MAX = 64
_UNSAFE_TEXT_RE = re.compile("[\x00\ud800-\udfff]")
_PRINTABLE_FIELD_RE = re.compile(r"[^\x21-\x7e]")


def unsafe_text(value: str) -> bool:
    """True when `value` holds a NUL or a lone surrogate."""
    return _UNSAFE_TEXT_RE.search(value) is not None


def safe_field_name(name: str) -> str:
    """A field name fit to echo in an error body and a log line: printable ASCII, bounded."""
    return _PRINTABLE_FIELD_RE.sub("?", name)[:FIELD_NAME_CHARS_MAX] or "?"


def check_json(value) -> None:
    """Refuse NUL and lone surrogates anywhere in a decoded JSON value, and nesting deeper
    than JSON_DEPTH_MAX. Iterative, so no input can exhaust the stack."""
    stack = [(value, "body", 1)]
    while stack:
        item, path, depth = stack.pop()
        if depth > JSON_DEPTH_MAX:
            raise InvalidField("body", "nested_too_deep", f"JSON nested deeper than {JSON_DEPTH_MAX} levels")
        if isinstance(item, str):
            if unsafe_text(item):
                raise InvalidField(path, "bad_characters", f"{path}: NUL or invalid Unicode in a string")
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = safe_field_name(key) if path == "body" else f"{path}.{safe_field_name(key)}"
                if unsafe_text(key):
                    raise InvalidField(child_path, "bad_characters", "NUL or invalid Unicode in a field name")
                stack.append((child, child_path, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))


def parse_json(raw: bytes):
    """The decoded body, checked by `check_json`; PARAM_ERROR when it is not JSON."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidField("body", "not_json", "request body is not valid JSON") from None
    check_json(value)
    return value


def check_request_text(match_info, query) -> None:
    """Path and query parameters: no NUL, no lone surrogate, in names or values."""
    for name, value in match_info.items():
        if unsafe_text(value):
            raise InvalidField(safe_field_name(name), "bad_characters", "NUL or invalid Unicode in the path")
    for name, value in query.items():
        if unsafe_text(name) or unsafe_text(value):
            raise InvalidField(safe_field_name(name), "bad_characters", "NUL or invalid Unicode in the query")
