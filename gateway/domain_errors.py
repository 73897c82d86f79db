"""Expected refusals, in the domain's words. Nothing here knows HTTP or WeChat's codes.

Services and the edge raise these; `gateway.api.middleware` maps each kind to WeChat's
status, code and message in one table. Every refusal changes nothing. `reason` is a stable
snake_case word a program can match (`order_paid`, `tenant_not_found`); `message` says it
to a person (None: the answer carries WeChat's generic text); `detail` carries the facts.
The pure cores keep their own refusals (`splitting.rules.SplitRefused`), mapped the same way.
"""

from __future__ import annotations


class DomainError(Exception):
    def __init__(self, reason: str, message: str | None = None, **detail):
        super().__init__(reason)
        self.reason = reason
        self.message = message
        self.detail = {"reason": reason, **detail}


class InvalidField(DomainError):
    """A field of the request is missing or malformed: `field` names it, `issue` says how."""

    def __init__(self, field: str, issue: str, message: str | None = None):
        super().__init__(issue, message or f"{field}: {issue}")
        self.field = field
        self.detail = {"field": field, "issue": issue}


class Refused(DomainError):
    """A well-formed request that the current state refuses (a paid order, a reused key...)."""


class KeyReused(Refused):
    """An idempotency key (out_trade_no, out_refund_no...) came back with other fields."""

    def __init__(self, key: str):
        super().__init__(f"{key}_reused", f"{key} was used with other fields")


class ChannelRefused(Refused):
    """The payment channel refused the request for good; `channel_code` is its own word."""

    def __init__(self, what: str, channel_code: str, reason: str = "channel_refused"):
        super().__init__(reason, f"the payment channel refused the {what}", channel_code=channel_code)


class StoreBalanceInsufficient(Refused):
    """The store's available balance (less what refunds in flight will draw) cannot carry
    its part of a refund: `needed` fen against `available`."""

    def __init__(self, available: int, needed: int):
        super().__init__("store_balance_insufficient", "the store's available balance cannot carry this refund now",
                         available=available, needed=needed)


class NotPermitted(DomainError):
    """The caller's role or store may not do this."""


class NotFound(DomainError):
    """`what` (an order, a tenant, a split...) does not exist, or not for this caller:
    another store's data answers exactly as missing data does."""

    def __init__(self, what: str, reason: str | None = None, message: str | None = None, **detail):
        super().__init__(reason or f"{what}_not_found", message, **detail)
        self.what = what


class InProgress(DomainError):
    """The same key is being processed right now; retrying shortly is safe."""


class ChannelUnavailable(DomainError):
    """The payment channel failed or timed out; no money moved. Retrying the same request
    is safe: it carries on from where this one stopped."""

    def __init__(self, reason: str = "channel_unavailable", message: str | None = None, **detail):
        super().__init__(reason, message, **detail)
