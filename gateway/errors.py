"""Refusals of the request itself, found at the edge before any use case runs: its
signature, its body, the database behind it.

Like `gateway.domain_errors` they say what is wrong and nothing of HTTP; the middleware's
one table (`gateway.api.middleware.WECHAT_ERRORS`) says how WeChat answers each. Anything
else is a bug: logged, and answered as a bare SYSTEM_ERROR with no internals in the body.
"""

from __future__ import annotations

from gateway.domain_errors import DomainError


class SignError(DomainError):
    """The Authorization header is malformed, stale, replayed, or does not verify."""


class BodyTooLarge(DomainError):
    """The body is larger than the gateway reads."""


class BodyReadTimeout(DomainError):
    """The client declared a body and did not send it in time."""


class UnsupportedContentType(DomainError):
    """WeChat Pay v3 takes JSON bodies only (Content-Type: application/json)."""


class DatabaseUnavailable(DomainError):
    """The database is away (restarting, connections dropped, pool exhausted); nothing was
    committed by this request, or it was committed once and a retry returns it."""
