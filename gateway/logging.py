"""structlog JSON lines with the request id bound per request.

`redact_secrets` is the last line of defence: whatever a caller binds under a sensitive
name (keys, signatures, openids, Authorization headers) leaves as "****".
"""

from __future__ import annotations

import json
import logging
import re
import sys

import orjson
import structlog

SENSITIVE_KEY_RE = re.compile(
    r"(secret|private|apiv3|signature|sign$|paysign|authorization|openid|password|token|ciphertext)",
    re.IGNORECASE,
)


def redact_secrets(_logger, _method, event_dict: dict) -> dict:
    for key in list(event_dict):
        if SENSITIVE_KEY_RE.search(key):
            event_dict[key] = "****"
    return event_dict


def encodable_line(_logger, _method, line: str) -> str:
    """After rendering: a line always encodes as UTF-8 (a lone surrogate that reached an
    event becomes an escape), so logging can never fail a request."""
    return line.encode("utf-8", "backslashreplace").decode("utf-8")


def json_line(event_dict: dict, **_kw) -> str:
    """An event as one JSON line: orjson (several times faster than the standard
    library, and logging runs for every request), the standard library for what orjson
    refuses (a lone surrogate, a key that is not a string), so logging never fails."""
    try:
        return orjson.dumps(event_dict, default=repr).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(event_dict, ensure_ascii=False, default=repr)


def configure_logging(level: str = "info", stream=None) -> None:
    level_no = logging.getLevelName(level.upper())
    if not isinstance(level_no, int):
        level_no = logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=json_line),
            encodable_line,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
    # aiohttp's own access log would duplicate ours and knows nothing of redaction.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
