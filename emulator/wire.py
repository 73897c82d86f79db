"""What every emulator handler shares: WeChat's error body, JSON in and out, its time format.

Deliberately independent of `gateway.channel.transformers`: the emulator is a second,
separate reading of WeChat's documentation, so a mistake in the client is not mirrored
here and caught by nobody.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

CHINA_TZ = timezone(timedelta(hours=8))
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


def json_bytes(data: Any) -> bytes:
    # WeChat answers compact UTF-8 JSON; Chinese text is not \u-escaped.
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(data: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=json_bytes(data), status=status, content_type=JSON_CONTENT_TYPE, charset="utf-8")


def no_content() -> web.Response:
    return web.Response(body=b"", status=204, content_type=JSON_CONTENT_TYPE, charset="utf-8")


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"code": code, "message": message}, status=status)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = json.loads(raw)
    except ValueError:
        raise param_error("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise param_error("body must be a JSON object")
    return data


def format_time(moment: datetime) -> str:
    """WeChat's RFC 3339 in China time: 2018-06-08T10:34:56+08:00."""
    assert moment.tzinfo is not None, "emulator times are aware"
    return moment.astimezone(CHINA_TZ).replace(microsecond=0).isoformat()


def parse_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else None
