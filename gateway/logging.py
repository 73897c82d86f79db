"""structlog JSON lines with the request id bound per request.

`redact_secrets` is the last line of defence: whatever a caller binds under a sensitive
name (keys, signatures, openids, Authorization headers) leaves as "****".
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys

import orjson
import structlog
from aiohttp.http_exceptions import HttpProcessingError

SENSITIVE_KEY_RE = re.compile(
    r"(secret|private|apiv3|signature|sign$|paysign|authorization|openid|password|token|ciphertext)",
    re.IGNORECASE,
)
# Event keys are names written in the code, a few dozen in all; the bound only guards
# against a caller that makes keys up.
SENSITIVE_KEYS_CACHED_MAX = 1024


@functools.lru_cache(maxsize=SENSITIVE_KEYS_CACHED_MAX)
def _sensitive(key: str) -> bool:
    """Whether `key` names a secret: asked once per key name, not once per event."""
    return SENSITIVE_KEY_RE.search(key) is not None


def redact_secrets(_logger, _method, event_dict: dict) -> dict:
    for key in event_dict:  # values change, keys do not: iterating the dict itself is safe
        if _sensitive(key):
            event_dict[key] = "****"
    return event_dict


def json_line(event_dict: dict, **_kw) -> str:
    """An event as one JSON line: orjson (several times faster than the standard
    library, and logging runs for every request), the standard library for what orjson
    refuses (a lone surrogate, a key that is not a string), so logging never fails.

    The line always encodes as UTF-8: orjson writes only valid UTF-8, and what the
    standard library writes has any lone surrogate turned into an escape."""
    try:
        return orjson.dumps(event_dict, default=repr).decode()
    except (TypeError, orjson.JSONEncodeError):
        line = json.dumps(event_dict, ensure_ascii=False, default=repr)
        return line.encode("utf-8", "backslashreplace").decode("utf-8")


TIMESTAMP = structlog.processors.TimeStamper(fmt="iso", utc=True)
# The last steps of every event, the gateway's own and the libraries' alike.
AS_JSON_LINE = (
    redact_secrets,
    structlog.processors.format_exc_info,
    structlog.processors.JSONRenderer(serializer=json_line),
)


def configure_logging(level: str = "info", stream=None, *, cache_loggers: bool = False) -> None:
    """`cache_loggers`: each logger is assembled once, on first use, instead of for every
    event (structlog's advice for production). Only for a process that configures logging
    once and for all, such as a served gateway: a cached logger keeps the configuration it
    was assembled with, so tests that configure logging again leave it off."""
    level_no = logging.getLevelName(level.upper())
    if not isinstance(level_no, int):
        level_no = logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            TIMESTAMP,
            *AS_JSON_LINE,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=structlog.WriteLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=cache_loggers,
    )
    # aiohttp's own access log would duplicate ours and knows nothing of redaction.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    _route_stdlib_logging(stream or sys.stdout)


# What the libraries log through the standard library (aiohttp's server, asyncio) goes out
# as JSON lines on the same stream too, a traceback inside its line, so the log stays one
# event per line for whatever reads it. Only the root logger's level (WARNING) lets through.
_stdlib_handler: logging.Handler | None = None


def _route_stdlib_logging(stream) -> None:
    global _stdlib_handler
    stop_routing_stdlib_logging()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(allow=CLIENT_ERROR_FIELDS),
            TIMESTAMP,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *AS_JSON_LINE],
    ))
    handler.addFilter(client_http_errors)
    logging.getLogger().addHandler(handler)
    _stdlib_handler = handler


def stop_routing_stdlib_logging() -> None:
    """Take the handler `configure_logging` installed off the root logger (tests)."""
    global _stdlib_handler
    if _stdlib_handler is not None:
        logging.getLogger().removeHandler(_stdlib_handler)
        _stdlib_handler = None


CLIENT_ERROR_FIELDS = ("remote", "error")


def client_http_errors(record: logging.LogRecord) -> bool:
    """aiohttp logs a request it could not even parse (a request line or header too long,
    bad framing) as an error with its traceback. That is the client's mistake and a
    client can send any number of them: one warning line, no traceback."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError) and record.name == "aiohttp.server":
        record.remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
        record.error = f"{exc.code} {exc.message}".strip()
        record.msg, record.args, record.exc_info, record.exc_text = "http.client_request_malformed", (), None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True
