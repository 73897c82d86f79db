"""What payment success writes besides the order's own state change: the extension point.

`PaymentEffects` is data: balanced ledger transfers plus rows for other tables. The
database writes all of it in the transaction that moves the order `NOTPAY → SUCCESS`
(one call of `mallpay_apply_payment`, one round trip), or none of it. Transfers go
through the ledger's posting path (`ledger_post_transfer`); a row for table `T` goes
through `T`'s one writer, the SQL function `T_insert_row(jsonb)` declared by the
migration that creates `T`.

`payment_effects()` builds what every payment writes: the payment transfer, the order's
funds (the rule is `splitting.funds.OrderFunds.paid`), the `TRANSACTION.SUCCESS`
notification and the splitting deadlines. A feature that must happen exactly when a
payment succeeds adds to the value from pure code, e.g. a mall-funded coupon:

    effects = effects.with_transfer(coupon_subsidy_transfer(...)).with_row("coupon_redemptions", {...})

and never re-declares the SQL function. Pure: no I/O, no clock (times come in).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.repo import jobs as jobs_repo
from gateway.repo import outbox as outbox_repo
from gateway.shapes.transactions import paid_notice
from ledger.payments import channel_fee_fen, payment_ref, payment_transfer
from ledger.transfers import Transfer
from splitting import repo as splitting_repo
from splitting.funds import OrderFunds
from splitting.rules import finish_by

JOB_FINISH_ORDER = "finish_order"
JOB_GUIDE_REWARD = "guide_reward"


@dataclass(frozen=True, slots=True)
class PaymentEffects:
    transfers: tuple[Transfer, ...] = ()
    rows: tuple[tuple[str, dict], ...] = ()  # (table, row as its writer takes it)

    def with_transfer(self, transfer: Transfer) -> "PaymentEffects":
        return PaymentEffects(self.transfers + (transfer,), self.rows)

    def with_row(self, table: str, row: dict) -> "PaymentEffects":
        assert table.isidentifier(), table
        return PaymentEffects(self.transfers, self.rows + ((table, row),))

    def transfers_data(self) -> list[tuple]:
        """The transfers as `mallpay_apply_payment` takes them (SQL type `ledger_transfer`)."""
        return [(t.kind, t.ref, t.currency, t.accounts, t.amounts_fen) for t in self.transfers]

    def rows_by_table(self) -> dict[str, list[dict]]:
        grouped: dict[str, list[dict]] = {}
        for table, row in self.rows:
            grouped.setdefault(table, []).append(row)
        return grouped


@dataclass(frozen=True, slots=True)
class Paid:
    """What the channel says about the payment: the columns it sets on the order."""

    transaction_id: str
    bank_type: str
    success_at: datetime
    payer_total_fen: int

    def columns(self) -> dict:
        return {"transaction_id": self.transaction_id, "bank_type": self.bank_type,
                "success_at": self.success_at, "payer_total_fen": self.payer_total_fen}


def payment_effects(order, paid: Paid, *, notification_id, now: datetime, split_first_try_after_s: int,
                    finish_before_unfreeze_s: int) -> PaymentEffects:
    """Everything an order's payment writes. `order` is the order with its store's
    contract and guide as `orders_repo.ORDER_TO_PAY` reads them before paying."""
    mall_id, sub_mchid, out_trade_no = order["mall_id"], order["sub_mchid"], order["out_trade_no"]
    ref = payment_ref(sub_mchid, out_trade_no)
    profit_sharing = order["profit_sharing"]
    fee_fen = channel_fee_fen(order["total_fen"], order["fee_rate_bps"])
    funds = OrderFunds.paid(
        order["total_fen"], fee_fen, order["max_ratio_bps"], profit_sharing=profit_sharing,
        guide_reward_bps=order["guide_reward_bps"] if order["guide_of_store"] else 0,
        commission_bps=order["commission_bps"] if order["auto_split"] else 0,
    )
    deadline = finish_by(paid.success_at, order["freeze_days"], finish_before_unfreeze_s)
    now_text = now.isoformat()
    effects = PaymentEffects().with_transfer(payment_transfer(
        sub_mchid=sub_mchid, out_trade_no=out_trade_no, total_fen=order["total_fen"], fee_fen=fee_fen,
        profit_sharing=profit_sharing,
    )).with_row(outbox_repo.TABLE, outbox_repo.event_row(
        mall_id=mall_id, notification_id=notification_id, client_id=order["client_id"],
        notify_url=order["notify_url"], ref=ref, now=now_text, **paid_notice(order, paid.columns()).columns(),
    )).with_row(splitting_repo.FUNDS_TABLE, splitting_repo.opened_funds_row(
        mall_id=mall_id, sub_mchid=sub_mchid, out_trade_no=out_trade_no, transaction_id=paid.transaction_id,
        funds=funds, approval_id=order["approval_id"], paid_at=paid.success_at, finish_by=deadline,
    ))
    if profit_sharing:
        effects = effects.with_row(jobs_repo.TABLE, jobs_repo.job_row(mall_id, JOB_FINISH_ORDER, ref, deadline, now_text))
        if "guide_id" in order["mall_info"]:
            reward_due_at = paid.success_at + timedelta(seconds=split_first_try_after_s)
            effects = effects.with_row(jobs_repo.TABLE,
                                       jobs_repo.job_row(mall_id, JOB_GUIDE_REWARD, ref, reward_due_at, now_text))
    return effects
