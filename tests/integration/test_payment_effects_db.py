"""Payment success writes its effects as data in one call: a table nobody told the
payment function about joins it through its own writer, atomically."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from gateway.repo import orders as orders_repo
from gateway.services import onboarding
from gateway.services.payment_effects import Paid, payment_effects
from ledger import accounts
from ledger import repo as ledger_repo
from ledger.transfers import Move, transfer_of
from tests.support import add_tenant

MALL = "1900000100"
STORE = "1900000201"
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
EXTRA_TABLE = """
CREATE TABLE test_extras (mall_id text NOT NULL, ref text NOT NULL, points bigint NOT NULL);
CREATE FUNCTION test_extras_insert_row(p_row jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test_extras VALUES (p_row->>'mall_id', p_row->>'ref', (p_row->>'points')::bigint);
END $$;
"""


async def _order(pool, out_trade_no: str):
    values = {"mall_id": MALL, "sub_mchid": STORE, "out_trade_no": out_trade_no, "client_id": "c1",
              "request_hash": "h", "sp_appid": "wxmall", "sub_appid": None, "description": "tea",
              "total_fen": 1000, "currency": "CNY", "payer_sp_openid": "oShopper", "payer_sub_openid": None,
              "notify_url": "https://mall.example.com/n", "attach": None, "profit_sharing": True,
              "fee_rate_bps": 60, "time_expire": NOW + timedelta(hours=2), "mall_info": {},
              "created_at": NOW, "next_check_at": NOW + timedelta(minutes=1)}
    async with pool.acquire() as conn:
        await orders_repo.insert_order(conn, values)
        return await orders_repo.order_to_pay(conn, MALL, STORE, out_trade_no)


async def _pay(pool, row, effects, paid):
    async with pool.acquire() as conn:
        return await orders_repo.apply_payment(
            conn, key=(MALL, STORE, row["out_trade_no"]), total_fen=row["total_fen"], paid=paid.columns(), now=NOW,
            transfers=effects.transfers_data(), rows=list(effects.rows))


async def test_extra_transfer_and_row_join_payment_success_once(db_pool):
    await onboarding.ensure_mall(db_pool, MALL, "wxmall", "Test mall")
    await add_tenant(db_pool, MALL, STORE)
    async with db_pool.acquire() as conn:
        await conn.execute(EXTRA_TABLE)
        await ledger_repo.ensure_accounts(conn, MALL, [
            accounts.AccountSpec("points:issued", "PTS", accounts.Bound.ANY),
            accounts.AccountSpec("points:member:abc", "PTS", accounts.Bound.NON_NEGATIVE)])
    row = await _order(db_pool, "T0001|x")
    paid = Paid(transaction_id="4200000001", bank_type="OTHERS", success_at=NOW, payer_total_fen=1000)
    earn = transfer_of("points_earn", f"{STORE}/T0001|x", "PTS", [Move("points:issued", "points:member:abc", 10)])
    effects = payment_effects(row, paid, notification_id=uuid.uuid4(), now=NOW, split_first_try_after_s=65,
                              finish_before_unfreeze_s=86_400)
    effects = effects.with_transfer(earn).with_row("test_extras", {"mall_id": MALL, "ref": "T0001|x", "points": 10})

    assert await _pay(db_pool, row, effects, paid) == "applied"
    assert await _pay(db_pool, row, effects, paid) == "already_applied"
    async with db_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM test_extras") == 1
        assert await ledger_repo.balance_fen(conn, MALL, "points:member:abc") == 10
        assert await conn.fetchval("SELECT count(*) FROM order_funds") == 1
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'finish_order'") == 1
        assert await ledger_repo.check_invariants(conn) == []


async def test_a_failing_effect_leaves_the_order_unpaid(db_pool):
    await onboarding.ensure_mall(db_pool, MALL, "wxmall", "Test mall")
    await add_tenant(db_pool, MALL, STORE)
    row = await _order(db_pool, "T00002")
    paid = Paid(transaction_id="4200000002", bank_type="OTHERS", success_at=NOW, payer_total_fen=1000)
    effects = payment_effects(row, paid, notification_id=uuid.uuid4(), now=NOW, split_first_try_after_s=65,
                              finish_before_unfreeze_s=86_400)
    broken = effects.with_transfer(transfer_of("points_earn", f"{STORE}/T00002", "PTS", [
        Move("points:issued", "points:member:nobody", 10)]))  # accounts that do not exist
    try:
        await _pay(db_pool, row, broken, paid)
    except Exception as exc:  # noqa: BLE001 - the database refuses; which class does not matter here
        assert "unknown account" in str(exc)
    else:
        raise AssertionError("a transfer to unknown accounts was posted")
    async with db_pool.acquire() as conn:
        assert (await orders_repo.order(conn, MALL, STORE, "T00002"))["state"] == "NOTPAY"
        assert await conn.fetchval("SELECT count(*) FROM transfers") == 0
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
        assert await ledger_repo.check_invariants(conn) == []
