"""What every emulator handler shares: WeChat's error body, JSON in and out, its time format.

Deliberately independent of `gateway.channel.transformers`: the emulator is a second,
separate reading of WeChat's documentation, so a mistake in the client is not mirrored
here and caught by nobody. Only the wire's byte conventions (compact UTF-8 JSON, RFC 3339
in China time) come from `gateway.wire`, as the signing helpers come from `gateway.signing`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web

# Re-exported for the emulator's modules, format_time under the emulator's name for it.
from gateway.wire import CHINA_TZ, json_bytes  # noqa: F401
from gateway.wire import to_wechat_time as format_time  # noqa: F401

JSON_CONTENT_TYPE = "application/json"


class EmulatorError(Exception):
    """An answer WeChat Pay gives as HTTP status plus {"code", "message"}."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def param_error(message: str) -> EmulatorError:
    return EmulatorError(400, "PARAM_ERROR", message)


def json_response(data: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=json_bytes(data), status=status, content_type=JSON_CONTENT_TYPE, charset="utf-8")


def no_content() -> web.Response:
    return web.Response(body=b"", status=204, content_type=JSON_CONTENT_TYPE, charset="utf-8")


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"code": code, "message": message}, status=status)


def fields_json(record: Any, *names: str) -> dict[str, Any]:
    """The named fields of an emulator record, for WeChat JSON that calls them by the same names."""
    return {name: getattr(record, name) for name in names}


def required_query(request: web.Request, *names: str) -> tuple[str, ...]:
    """The named query parameters, in order; PARAM_ERROR naming them all when one is
    missing or empty."""
    values = tuple(request.query.get(name) for name in names)
    if not all(values):
        if len(names) == 1:
            raise param_error(f"{names[0]} is a required query parameter")
        raise param_error(f"{', '.join(names[:-1])} and {names[-1]} are required query parameters")
    return values


async def read_json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = json.loads(raw)
    except ValueError:
        raise param_error("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise param_error("body must be a JSON object")
    return data


def parse_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else None
