"""What a payment writes, as data: the payment transfer, the order's funds, the
notification and the splitting deadlines, and how a feature adds to it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from gateway.services.payment_effects import Paid, PaymentEffects, payment_effects
from ledger import accounts
from ledger.transfers import Move, transfer_of

PAID_AT = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
NOTIFICATION = uuid.UUID("12345678-1234-4234-8234-123456789abc")


def order(**overrides) -> dict:
    row = {"mall_id": "1900000100", "sub_mchid": "1900000201", "out_trade_no": "T0001|a", "client_id": "c1",
           "notify_url": "https://mall.example.com/n", "total_fen": 10_000, "fee_rate_bps": 60,
           "profit_sharing": True, "mall_info": {}, "max_ratio_bps": 3000, "approval_id": None, "freeze_days": 30,
           "guide_reward_bps": 200, "commission_bps": 500, "auto_split": True, "guide_of_store": False,
           "sp_appid": "wxapp", "sub_appid": None, "currency": "CNY", "attach": None,
           "payer_sp_openid": "oShopper", "payer_sub_openid": None}
    return {**row, **overrides}


def effects_of(row: dict) -> PaymentEffects:
    paid = Paid(transaction_id="4200000001", bank_type="OTHERS", success_at=PAID_AT, payer_total_fen=row["total_fen"])
    return payment_effects(row, paid, notification_id=NOTIFICATION, now=PAID_AT, split_first_try_after_s=65,
                           finish_before_unfreeze_s=86_400)


def test_profit_sharing_payment_freezes_the_store_share_and_schedules_the_finish():
    effects = effects_of(order())
    [(kind, ref, currency, accounts_, amounts)] = effects.transfers_data()
    assert (kind, ref, currency) == ("payment", "1900000201/T0001|a", "CNY")
    assert dict(zip(accounts_, amounts)) == {
        accounts.PAYER: -10_000, accounts.tenant_frozen("1900000201"): 9_940, accounts.CHANNEL_FEES: 60}
    rows = effects.rows_by_table()
    [funds] = rows["order_funds"]
    assert (funds["paid_fen"], funds["fee_fen"], funds["frozen_fen"], funds["unfrozen"]) == (10_000, 60, 9_940, False)
    assert funds["finish_by"] == (PAID_AT + timedelta(days=29)).isoformat()
    [notification] = rows["outbox"]
    assert notification["event_type"] == "TRANSACTION.SUCCESS" and notification["client_id"] == "c1"
    assert notification["resource"]["trade_state"] == "SUCCESS"
    assert notification["resource"]["transaction_id"] == "4200000001"
    assert [job["kind"] for job in rows["jobs"]] == ["finish_order"]


def test_payment_without_profit_sharing_opens_nothing_to_split():
    effects = effects_of(order(profit_sharing=False))
    [funds] = effects.rows_by_table()["order_funds"]
    assert (funds["frozen_fen"], funds["unfrozen"]) == (0, True)
    assert "jobs" not in effects.rows_by_table()
    [(_, _, _, accounts_, _)] = effects.transfers_data()
    assert accounts.tenant_available("1900000201") in accounts_


def test_a_guides_order_schedules_the_reward_after_the_channels_wait():
    rows = effects_of(order(mall_info={"guide_id": "G1"}, guide_of_store=True)).rows_by_table()
    due = {job["kind"]: job["due_at"] for job in rows["jobs"]}
    assert due == {"finish_order": (PAID_AT + timedelta(days=29)).isoformat(),
                   "guide_reward": (PAID_AT + timedelta(seconds=65)).isoformat()}
    [funds] = rows["order_funds"]
    assert (funds["reward_set_aside_fen"], funds["commission_set_aside_fen"]) == (200, 500)


def test_room_is_set_aside_only_for_the_stores_own_guide_and_an_automatic_commission():
    [funds] = effects_of(order(mall_info={"guide_id": "G9"}, auto_split=False)).rows_by_table()["order_funds"]
    assert (funds["reward_set_aside_fen"], funds["commission_set_aside_fen"]) == (0, 0)
    [funds] = effects_of(order(profit_sharing=False, guide_of_store=True)).rows_by_table()["order_funds"]
    assert (funds["reward_set_aside_fen"], funds["commission_set_aside_fen"]) == (0, 0)


def test_a_feature_joins_payment_success_by_adding_data():
    subsidy = transfer_of("coupon_subsidy", "1900000201/T0001|a", accounts.CNY, [
        Move("mall:coupon_subsidy", "tenant:1900000201:coupon_receivable", 500)])
    effects = effects_of(order()).with_transfer(subsidy).with_row("coupon_redemptions", {"coupon_id": "K1"})
    assert [t[0] for t in effects.transfers_data()] == ["payment", "coupon_subsidy"]
    assert effects.rows_by_table()["coupon_redemptions"] == [{"coupon_id": "K1"}]
