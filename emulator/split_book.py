"""Profit-sharing records as WeChat keeps them: split orders, split returns, receiver
relations and each store's maximum split ratio; plus their JSON answers.

Split orders and returns are keyed by (sub_mchid, out_*_no) and forgotten oldest first
beyond `split_orders_max`. Receiver relations and ratio settings are not forgotten (a
forgotten relation would silently change which splits are allowed); beyond their bounds
new ones are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from emulator.bounded import Bounded
from emulator.wire import fields_json, format_time

PROCESSING = "PROCESSING"
FINISHED = "FINISHED"
PENDING = "PENDING"
SUCCESS = "SUCCESS"
CLOSED = "CLOSED"
FAILED = "FAILED"
KIND_SPLIT = "split"
KIND_UNFREEZE = "unfreeze"
RECEIVER_TYPES = ("MERCHANT_ID", "PERSONAL_OPENID", "PERSONAL_SUB_OPENID")
MERCHANT_ID = "MERCHANT_ID"


@dataclass
class SplitLine:
    type: str
    account: str
    amount_fen: int
    description: str
    detail_id: str
    created_at: datetime
    result: str = PENDING
    fail_reason: str | None = None
    finished_at: datetime | None = None


@dataclass
class SplitOrder:
    sp_mchid: str
    sub_mchid: str
    transaction_id: str
    out_order_no: str
    order_id: str
    kind: str  # KIND_SPLIT or KIND_UNFREEZE
    fingerprint: str
    created_at: datetime
    lines: list[SplitLine]
    unfreeze_unsplit: bool
    state: str = PROCESSING
    returned_fen: dict[str, int] = field(default_factory=dict)  # merchant account -> fen returned
    returns: dict[str, int] = field(default_factory=dict)  # merchant account -> return requests

    @property
    def key(self) -> tuple[str, str]:
        return (self.sub_mchid, self.out_order_no)

    def merchant_received_fen(self, account: str) -> int:
        return sum(line.amount_fen for line in self.lines
                   if line.type == MERCHANT_ID and line.account == account and line.result == SUCCESS)

    def finished_at(self) -> datetime | None:
        times = [line.finished_at for line in self.lines if line.finished_at is not None]
        return max(times) if self.state == FINISHED and times else None


@dataclass
class SplitReturn:
    sub_mchid: str
    order_id: str
    out_order_no: str
    out_return_no: str
    return_id: str
    return_mchid: str
    amount_fen: int
    description: str
    fingerprint: str
    created_at: datetime
    result: str
    fail_reason: str | None
    finished_at: datetime | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.sub_mchid, self.out_return_no)


@dataclass
class ReceiverRelation:
    sub_mchid: str
    type: str
    account: str
    relation_type: str
    custom_relation: str | None
    active: bool = True


class BookFull(Exception):
    """A bound that refuses rather than forgets was reached; nothing was changed."""


class SplitBook:
    def __init__(self, *, orders_max: int, relations_max: int, configs_max: int, max_ratio_bps_default: int):
        assert relations_max > 0 and configs_max > 0
        self._relations_max = relations_max
        self._configs_max = configs_max
        self._max_ratio_bps_default = max_ratio_bps_default
        self._orders: Bounded[tuple[str, str], SplitOrder] = Bounded(orders_max)
        self._returns: Bounded[tuple[str, str], SplitReturn] = Bounded(orders_max)
        self._relations: dict[tuple[str, str, str], ReceiverRelation] = {}
        self._max_ratios: dict[str, int] = {}

    # -- split orders -----------------------------------------------------------------

    def order(self, sub_mchid: str, out_order_no: str) -> SplitOrder | None:
        return self._orders.get((sub_mchid, out_order_no))

    def all_orders(self) -> list[SplitOrder]:
        return self._orders.values()

    def all_returns(self) -> list[SplitReturn]:
        return self._returns.values()

    def order_by_id(self, order_id: str) -> SplitOrder | None:
        return self._orders.by_id(order_id)

    def order_id_taken(self, order_id: str) -> bool:
        return self._orders.id_taken(order_id)

    def add_order(self, order: SplitOrder) -> None:
        self._orders.add(order.key, order, order.order_id)

    # -- split returns ----------------------------------------------------------------

    def split_return(self, sub_mchid: str, out_return_no: str) -> SplitReturn | None:
        return self._returns.get((sub_mchid, out_return_no))

    def add_return(self, split_return: SplitReturn) -> None:
        self._returns.add(split_return.key, split_return)

    # -- receivers and ratios -----------------------------------------------------------

    def relation(self, sub_mchid: str, receiver_type: str, account: str) -> ReceiverRelation | None:
        found = self._relations.get((sub_mchid, receiver_type, account))
        return found if found is not None and found.active else None

    def add_relation(self, relation: ReceiverRelation) -> None:
        key = (relation.sub_mchid, relation.type, relation.account)
        if key not in self._relations and len(self._relations) >= self._relations_max:
            raise BookFull("receivers_max")
        self._relations[key] = relation

    def delete_relation(self, sub_mchid: str, receiver_type: str, account: str) -> None:
        found = self._relations.get((sub_mchid, receiver_type, account))
        if found is not None:
            found.active = False  # kept: its slot still counts, so churn cannot grow memory

    def max_ratio_bps(self, sub_mchid: str) -> int:
        return self._max_ratios.get(sub_mchid, self._max_ratio_bps_default)

    def set_max_ratio_bps(self, sub_mchid: str, max_ratio_bps: int) -> None:
        if sub_mchid not in self._max_ratios and len(self._max_ratios) >= self._configs_max:
            raise BookFull("merchants_max")
        self._max_ratios[sub_mchid] = max_ratio_bps


def split_order_json(order: SplitOrder) -> dict[str, Any]:
    """The answer of POST/GET /v3/profitsharing/orders (and of the unfreeze)."""
    return {
        **fields_json(order, "sub_mchid", "transaction_id", "out_order_no", "order_id", "state"),
        "receivers": [_line_json(line) for line in order.lines],
    }


def _line_json(line: SplitLine) -> dict[str, Any]:
    return {**fields_json(line, "type", "account", "detail_id"), **_amount_and_outcome_json(line)}


def split_return_json(split_return: SplitReturn) -> dict[str, Any]:
    return {
        **fields_json(split_return, "sub_mchid", "order_id", "out_order_no", "out_return_no", "return_id",
                      "return_mchid"),
        **_amount_and_outcome_json(split_return),
    }


def _amount_and_outcome_json(moved: SplitLine | SplitReturn) -> dict[str, Any]:
    """What a receiver line and a return both say: the fen moved and why, the result, when
    it was made and finished, and why it failed if it did. WeChat documents finish_time as
    always present; while PENDING it repeats create_time."""
    data: dict[str, Any] = {
        "amount": moved.amount_fen,
        "description": moved.description,
        "result": moved.result,
        "create_time": format_time(moved.created_at),
        "finish_time": format_time(moved.finished_at or moved.created_at),
    }
    if moved.fail_reason:
        data["fail_reason"] = moved.fail_reason
    return data
