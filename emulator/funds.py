"""The emulator's money model: where every fen of a paid order is, per store.

A paid order pays WeChat's fee first (`fee_rate_bps`, rounded half up per order). The rest
either settles straight to the store's *available* balance or, for an order paid with
settle_info.profit_sharing=true, stays *unsplit* (frozen) on the order until split orders
move it to receivers and an unfreeze (or `unfreeze_unsplit`, or the automatic unfreeze
`freeze_days` after payment) releases what is left to the store. Receivers keep what they
were sent; a split return moves money from a merchant receiver back to the store's
available balance; a refund takes its net amount (refund minus the fee WeChat gives back)
from the order's unsplit money first, then from the store's available balance.

Pure and synchronous: the HTTP resources call it with the emulator clock's `now`. Every
balance is asserted never to go negative; the sum of all balances plus fees kept plus
money refunded equals all money paid (`total_in_fen`), which the tests check.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

log = structlog.get_logger(__name__)

BPS_WHOLE = 10_000
RECEIVER_MERCHANT = "MERCHANT_ID"


def fee_for(total_fen: int, fee_rate_bps: int) -> int:
    """WeChat's fee on one order: the rate in basis points, rounded half up to a fen."""
    assert total_fen >= 0 and 0 <= fee_rate_bps <= BPS_WHOLE
    return (total_fen * fee_rate_bps + BPS_WHOLE // 2) // BPS_WHOLE


def fee_refunded_after(fee_fen: int, total_fen: int, refunded_fen: int) -> int:
    """Fee given back once `refunded_fen` of the order has been refunded in all: the fee
    in proportion, floored, so a full refund gives back the whole fee."""
    assert 0 <= refunded_fen <= total_fen and total_fen > 0
    return fee_fen * refunded_fen // total_fen


@dataclass
class TradeFunds:
    """One paid order's money at the channel."""

    transaction_id: str
    sp_mchid: str
    sub_mchid: str
    out_trade_no: str
    total_fen: int
    fee_fen: int
    profit_sharing: bool
    paid_at: datetime
    unsplit_fen: int  # frozen on the order, waiting to be split or released
    closing: bool  # no further splits: unfrozen, or an unfreeze is under way
    split_requests: int = 0
    split_to_others_fen: int = 0  # sent (or in flight) to receivers other than the store; capped
    refunded_fen: int = 0
    refunds: int = 0

    @property
    def refund_left_fen(self) -> int:
        return self.total_fen - self.refunded_fen


class FundsFull(Exception):
    """A new store would exceed `merchants_max`; nothing was changed."""


class Funds:
    def __init__(self, *, fee_rate_bps: int, freeze_days: int, trades_max: int, merchants_max: int):
        assert trades_max > 0 and merchants_max > 0 and freeze_days >= 0
        self._fee_rate_bps = fee_rate_bps
        self._freeze = timedelta(days=freeze_days)
        self._trades_max = trades_max
        self._merchants_max = merchants_max
        self._trades: OrderedDict[str, TradeFunds] = OrderedDict()  # transaction_id -> funds
        self._frozen: OrderedDict[str, datetime] = OrderedDict()  # transaction_id -> unfreeze deadline
        self._available: dict[str, int] = {}  # sub_mchid -> fen
        self._received: dict[tuple[str, str], int] = {}  # (receiver type, account) -> fen
        self.fees_kept_fen = 0
        self.refunded_out_fen = 0
        self.in_flight_fen = 0  # held by PROCESSING split lines, on its way to a receiver
        self.total_in_fen = 0
        self.paid_out_fen = 0  # paid to the stores' banks (daily payouts)

    # -- reading ----------------------------------------------------------------------

    def trade(self, transaction_id: str) -> TradeFunds | None:
        return self._trades.get(transaction_id)

    def available_fen(self, sub_mchid: str) -> int:
        return self._available.get(sub_mchid, 0)

    def frozen_fen(self, sub_mchid: str) -> int:
        return sum(t.unsplit_fen for t in self._trades.values() if t.sub_mchid == sub_mchid)

    def received_fen(self, receiver_type: str, account: str) -> int:
        return self._received.get((receiver_type, account), 0)

    def knows_merchant(self, sub_mchid: str) -> bool:
        return sub_mchid in self._available

    def check_balanced(self) -> None:
        """Every fen paid in is somewhere: a balance, a fee, or back with the payer."""
        held = sum(self._available.values()) + sum(self._received.values())
        held += sum(t.unsplit_fen for t in self._trades.values()) + self.in_flight_fen
        out = self.fees_kept_fen + self.refunded_out_fen + self.paid_out_fen
        assert held + out == self.total_in_fen, "funds unbalanced"

    # -- payments and the automatic unfreeze ------------------------------------------

    def settle_payment(self, *, transaction_id: str, sp_mchid: str, sub_mchid: str, out_trade_no: str,
                       total_fen: int, profit_sharing: bool, paid_at: datetime) -> TradeFunds:
        if sub_mchid not in self._available and len(self._available) >= self._merchants_max:
            raise FundsFull(sub_mchid)
        assert transaction_id not in self._trades, "a transaction is settled once"
        while len(self._trades) >= self._trades_max:
            self._forget_oldest()
        fee_fen = fee_for(total_fen, self._fee_rate_bps)
        net_fen = total_fen - fee_fen
        self._available.setdefault(sub_mchid, 0)
        trade = TradeFunds(
            transaction_id=transaction_id, sp_mchid=sp_mchid, sub_mchid=sub_mchid, out_trade_no=out_trade_no,
            total_fen=total_fen, fee_fen=fee_fen, profit_sharing=profit_sharing, paid_at=paid_at,
            unsplit_fen=net_fen if profit_sharing else 0, closing=not profit_sharing,
        )
        self._trades[transaction_id] = trade
        self.total_in_fen += total_fen
        self.fees_kept_fen += fee_fen
        if profit_sharing:
            self._frozen[transaction_id] = paid_at + self._freeze
        else:
            self._available[sub_mchid] += net_fen
        return trade

    def sweep(self, now: datetime) -> int:
        """Release every order frozen longer than `freeze_days` (WeChat's own unfreeze);
        returns how many were released. Orders are frozen in payment order, so this only
        looks at the ones due."""
        released = 0
        while self._frozen:
            transaction_id, deadline = next(iter(self._frozen.items()))
            if deadline > now:
                break
            self._frozen.popitem(last=False)
            trade = self._trades.get(transaction_id)
            if trade is not None and trade.unsplit_fen:
                log.info("emulator.auto_unfreeze", transaction_id=transaction_id, fen=trade.unsplit_fen)
                released += 1
            if trade is not None:
                self.release(trade)
        return released

    # -- splits, unfreezes and returns --------------------------------------------------

    def hold_split(self, trade: TradeFunds, to_others_fen: int, to_store_fen: int) -> None:
        """A split was accepted: its money leaves the order's unsplit amount now."""
        amount = to_others_fen + to_store_fen
        assert not trade.closing and 0 < amount <= trade.unsplit_fen
        trade.unsplit_fen -= amount
        self.in_flight_fen += amount
        trade.split_to_others_fen += to_others_fen
        trade.split_requests += 1

    def pay_receiver(self, trade: TradeFunds, receiver_type: str, account: str, amount_fen: int) -> None:
        """A held split line succeeded: the receiver has the money (the store itself, too)."""
        assert 0 < amount_fen <= self.in_flight_fen
        self.in_flight_fen -= amount_fen
        if receiver_type == RECEIVER_MERCHANT and account == trade.sub_mchid:
            self._available[trade.sub_mchid] += amount_fen
        else:
            key = (receiver_type, account)
            self._received[key] = self._received.get(key, 0) + amount_fen

    def undo_split_line(self, trade: TradeFunds, receiver_type: str, account: str, amount_fen: int) -> None:
        """A held split line was CLOSED: the money goes back to the order (or, once the
        order is closing, to the store) and no longer counts against the cap."""
        assert 0 < amount_fen <= self.in_flight_fen
        self.in_flight_fen -= amount_fen
        if not (receiver_type == RECEIVER_MERCHANT and account == trade.sub_mchid):
            trade.split_to_others_fen -= amount_fen
            assert trade.split_to_others_fen >= 0
        if trade.closing or self._trades.get(trade.transaction_id) is not trade:
            self._available[trade.sub_mchid] += amount_fen  # closing, or forgotten meanwhile
        else:
            trade.unsplit_fen += amount_fen

    def close_for_splits(self, trade: TradeFunds) -> None:
        """No further splits (an unfreeze or unfreeze_unsplit was accepted)."""
        trade.closing = True

    def release(self, trade: TradeFunds) -> int:
        """Move what is left unsplit to the store's available balance; returns the fen."""
        amount = trade.unsplit_fen
        trade.unsplit_fen = 0
        trade.closing = True
        self._available[trade.sub_mchid] += amount
        self._frozen.pop(trade.transaction_id, None)
        return amount

    def take_back(self, sub_mchid: str, return_mchid: str, amount_fen: int) -> bool:
        """A split return: from a merchant receiver back to the store's available balance."""
        key = (RECEIVER_MERCHANT, return_mchid)
        if self._received.get(key, 0) < amount_fen:
            return False
        self._received[key] -= amount_fen
        self._available[sub_mchid] = self._available.get(sub_mchid, 0) + amount_fen
        return True

    # -- refunds ------------------------------------------------------------------------

    def refund_fee_fen(self, trade: TradeFunds, refund_fen: int) -> int:
        """The fee WeChat gives back with this refund (cumulative rule, see fee_refunded_after)."""
        before = fee_refunded_after(trade.fee_fen, trade.total_fen, trade.refunded_fen)
        after = fee_refunded_after(trade.fee_fen, trade.total_fen, trade.refunded_fen + refund_fen)
        return after - before

    def take_for_refund(self, trade: TradeFunds, refund_fen: int, *,
                        available_only: bool) -> tuple[int, int] | None:
        """Take a refund's net amount (refund minus fee given back): from the order's unsplit
        money first unless `available_only`, then from the store's available balance.
        Returns (fee given back, fen taken from the unsplit money), or None (nothing
        changed) when the money is not there."""
        assert 0 < refund_fen <= trade.refund_left_fen
        fee_back_fen = self.refund_fee_fen(trade, refund_fen)
        net_fen = refund_fen - fee_back_fen
        from_frozen = 0 if available_only else min(trade.unsplit_fen, net_fen)
        from_available = net_fen - from_frozen
        if self._available.get(trade.sub_mchid, 0) < from_available:
            return None
        trade.unsplit_fen -= from_frozen
        self._available[trade.sub_mchid] -= from_available
        trade.refunded_fen += refund_fen
        trade.refunds += 1
        self.fees_kept_fen -= fee_back_fen
        self.refunded_out_fen += refund_fen
        return fee_back_fen, from_frozen

    # -- payouts ------------------------------------------------------------------------

    def pay_out_all(self) -> list[tuple[str, int]]:
        """Pay every store's whole available balance to its bank: (sub_mchid, fen) each."""
        paid = [(sub_mchid, fen) for sub_mchid, fen in sorted(self._available.items()) if fen > 0]
        for sub_mchid, fen in paid:
            self._available[sub_mchid] -= fen
            self.paid_out_fen += fen
        return paid

    # -- memory bound -------------------------------------------------------------------

    def _forget_oldest(self) -> None:
        transaction_id, oldest = self._trades.popitem(last=False)
        if oldest.unsplit_fen:
            # Forgetting a frozen order must not lose its money: release it as WeChat would.
            self._available[oldest.sub_mchid] += oldest.unsplit_fen
            oldest.unsplit_fen = 0
        self._frozen.pop(transaction_id, None)
        log.warning("emulator.trade_funds_evicted", transaction_id=transaction_id)
