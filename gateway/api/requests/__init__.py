"""Request bodies and query strings parsed and validated at the edge, every refusal naming
its field and issue exactly (`InvalidField`), before any service runs or anything is written.

One module per API resource (`orders`, `refunds`, `profitsharing`, and `mall` for every
/v3/mall body); the field readers they share are here. Two readers of text fields stay apart on purpose, because the
answers differ and are part of the API: `text` (orders: a non-string is `not_a_string`)
and `field` (profit sharing and refunds: anything but a matching string is `bad_format`,
a missing one `required`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from urllib.parse import urlsplit

from aiohttp import web

from gateway.domain_errors import InvalidField
from gateway.formats import MCHID_RE
from gateway.wire import canonical_json

NOTIFY_URL_CHARS_MAX = 255


def request_hash(body: dict) -> str:
    """What idempotency compares: the same key with other fields is refused."""
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def body_object(body) -> dict:
    if not isinstance(body, dict):
        raise InvalidField("body", "not_an_object")
    return body


def field(body: dict, name: str, pattern: re.Pattern, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidField(name, "required" if value is None else "bad_format")
    return value


def _given(container: dict, name: str, required: bool, field: str | None = None):
    """The value, None when absent and optional; `required` refused when absent."""
    value = container.get(name)
    if value is None and required:
        raise InvalidField(field or name, "required")
    return value


def text(container: dict, name: str, pattern: re.Pattern, *, required: bool = True,
         field: str | None = None) -> str | None:
    field = field or name
    value = _given(container, name, required, field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField(field, "not_a_string")
    if not pattern.fullmatch(value):
        raise InvalidField(field, "bad_format")
    return value


def bounded(container: dict, name: str, chars_max: int, *, required: bool) -> str | None:
    value = _given(container, name, required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField(name, "not_a_string")
    if not value.strip() or len(value) > chars_max or any(ord(c) < 32 for c in value):
        raise InvalidField(name, "bad_length_or_characters", f"{name}: 1 to {chars_max} printable characters")
    return value


def sub_object(container: dict, name: str, *, required: bool) -> dict | None:
    value = _given(container, name, required)
    if value is not None and not isinstance(value, dict):
        raise InvalidField(name, "not_an_object")
    return value


def flag(container: dict, name: str, field: str) -> bool:
    value = container.get(name, False)
    if not isinstance(value, bool):
        raise InvalidField(field, "not_a_boolean")
    return value


def is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def store_query(request: web.Request) -> str:
    """The `sub_mchid` a query of one store's resource names (refunds, returns, splits)."""
    sub_mchid = request.query.get("sub_mchid", "")
    if not MCHID_RE.fullmatch(sub_mchid):
        raise InvalidField("sub_mchid", "required")
    return sub_mchid


def notify_url(body: dict, allow_loopback_http: bool) -> str:
    url = body.get("notify_url")
    if url is None:
        raise InvalidField("notify_url", "required")
    if not isinstance(url, str) or len(url) > NOTIFY_URL_CHARS_MAX:
        raise InvalidField("notify_url", "bad_format")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidField("notify_url", "bad_format") from None
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidField("notify_url", "bad_format", "notify_url is an absolute URL without credentials or query")
    loopback = _is_loopback(parts.hostname)
    if parts.scheme not in ("http", "https"):
        raise InvalidField("notify_url", "https_required", "notify_url must be https")
    if allow_loopback_http and loopback and port:
        return url  # local runs: the emulator, the demo and tests deliver on this machine
    if parts.scheme != "https":
        raise InvalidField("notify_url", "https_required", "notify_url must be https")
    if loopback or _is_private_literal(parts.hostname):
        # A client must not make the gateway call into a private network (SPEC 8); names
        # are checked again when they are resolved for delivery.
        raise InvalidField("notify_url", "private_address", "notify_url must be a public address")
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_private_literal(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return host.endswith((".local", ".internal", ".localhost"))
