"""Request field checks shared by the profit-sharing and refund resources.

Each returns the value or raises WeChat's 400 PARAM_ERROR naming the first fault, before
any state changes. Sensitive fields (a receiver's `name`) arrive RSA-OAEP encrypted under
the platform key named by the request's Wechatpay-Serial header and are opened here.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway import signing
from gateway.channel.credentials import EmulatorCredentials
from emulator.wire import param_error

MCHID_RE = re.compile(r"[0-9]{1,32}")
# WeChat: out_order_no, out_return_no and out_refund_no are 1..64 of digits, letters, _-|*@.
OUT_NO_RE = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")
OUT_NO_CHARS_MAX = 64
DESCRIPTION_CHARS_MAX = 80
ACCOUNT_CHARS_MAX = 64
APPID_CHARS_MAX = 32
NOTIFY_URL_CHARS_MAX = 256
NAME_CIPHERTEXT_CHARS_MAX = 1024  # the encrypted name; RSA-2048 OAEP is 344 base64 chars


def text(body: dict[str, Any], name: str, chars_max: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise param_error(f"{name} is required")
    if len(value) > chars_max:
        raise param_error(f"{name} is longer than {chars_max} characters")
    return value


def optional_text(body: dict[str, Any], name: str, chars_max: int) -> str | None:
    return None if body.get(name) is None else text(body, name, chars_max)


def mchid(body: dict[str, Any], name: str) -> str:
    value = text(body, name, 32)
    if not MCHID_RE.fullmatch(value):
        raise param_error(f"{name} must be digits")
    return value


def out_no(body: dict[str, Any], name: str) -> str:
    value = text(body, name, OUT_NO_CHARS_MAX)
    if not OUT_NO_RE.fullmatch(value):
        raise param_error(f"{name} must be 1-64 of [0-9A-Za-z_-|*@]")
    return value


def fen(value: Any, name: str) -> int:
    """A positive integer of fen (WeChat refuses 0 and fractions alike)."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise param_error(f"{name} must be a positive integer of fen")
    return value


def notify_url(body: dict[str, Any], name: str, http_hosts: tuple[str, ...]) -> str:
    url = text(body, name, NOTIFY_URL_CHARS_MAX)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise param_error(f"{name} must be an absolute http(s) URL")
    if parts.query:
        raise param_error(f"{name} must not carry query parameters")
    if parts.scheme == "http" and parts.hostname not in http_hosts:
        raise param_error(f"{name} must be https (plain http only to loopback)")
    return url


def encrypted_name(request: web.Request, value: Any, credentials: EmulatorCredentials) -> str:
    """Open an RSA-OAEP `name`; the request must name the platform key in Wechatpay-Serial.

    (The request verifier already refuses a Wechatpay-Serial naming another key.)
    """
    if request.headers.get("Wechatpay-Serial") != credentials.platform_public_key_id:
        raise param_error("an encrypted field needs the Wechatpay-Serial header")
    if not isinstance(value, str) or not value or len(value) > NAME_CIPHERTEXT_CHARS_MAX:
        raise param_error("name must be the encrypted name")
    plain = signing.oaep_decrypt(credentials.platform_private_key.reveal(), value)
    if plain is None or not plain.strip():
        raise param_error("name cannot be decrypted with the platform key")
    return plain


def fingerprint(fields: dict[str, Any]) -> str:
    """Canonical JSON of a request's *validated* fields, for idempotency: ciphertexts are
    random per encryption, so a resent request must compare by its decrypted values."""
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
