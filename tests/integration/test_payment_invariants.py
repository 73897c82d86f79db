"""The payment invariants (gateway.repo.orders.INVARIANT_QUERIES) name an order whose
books do not match its state: paid without exactly one payment transfer and one
TRANSACTION.SUCCESS notification, or unpaid with either."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gateway import invariants
from gateway.repo import orders as orders_repo
from gateway.services import onboarding
from ledger import repo as ledger_repo
from ledger.payments import payment_transfer
from tests.support import add_tenant

MALL, STORE = "1900000100", "1900000201"
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


async def _order(conn, out_trade_no: str) -> None:
    await orders_repo.insert_order(conn, {
        "mall_id": MALL, "sub_mchid": STORE, "out_trade_no": out_trade_no, "client_id": "c1", "request_hash": "h",
        "sp_appid": "wxmall", "sub_appid": None, "description": "tea", "total_fen": 1000, "currency": "CNY",
        "payer_sp_openid": "oShopper", "payer_sub_openid": None, "notify_url": "https://mall.example.com/n",
        "attach": None, "profit_sharing": False, "time_expire": NOW + timedelta(hours=2), "mall_info": {},
        "created_at": NOW, "next_check_at": NOW + timedelta(minutes=1)})


async def test_paid_and_unpaid_orders_whose_books_disagree_are_named(db_pool):
    await onboarding.ensure_mall(db_pool, MALL, "wxmall", "Test mall")
    await add_tenant(db_pool, MALL, STORE)
    async with db_pool.acquire() as conn:
        await _order(conn, "PAIDBARE01")
        await _order(conn, "UNPAIDPOSTED")
        assert await invariants.check_invariants(conn) == []
        # Marked paid by hand: no payment transfer, no notification.
        await conn.execute("UPDATE orders SET state = 'SUCCESS', transaction_id = '4200000000000000000000000001', "
                           "success_at = $1 WHERE out_trade_no = 'PAIDBARE01'", NOW)
        # Unpaid, yet the ledger took the payment.
        await ledger_repo.post_transfer(conn, MALL, payment_transfer(
            sub_mchid=STORE, out_trade_no="UNPAIDPOSTED", total_fen=1000, fee_fen=6, profit_sharing=False), NOW)
        problems = await invariants.check_invariants(conn)
    assert any(p.startswith("paid_order_without_one_payment") and f"{STORE}/PAIDBARE01 is SUCCESS with 0 payment "
               "transfers" in p for p in problems), problems
    assert any(p.startswith("paid_order_without_one_payment") and f"{STORE}/UNPAIDPOSTED is NOTPAY with 1 payment "
               "transfers" in p for p in problems), problems
    assert any(p.startswith("paid_order_without_one_notification") and f"{STORE}/PAIDBARE01 is SUCCESS with 0 "
               "TRANSACTION.SUCCESS outbox rows" in p for p in problems), problems
    assert not any("UNPAIDPOSTED" in p and "notification" in p.split(":")[0] for p in problems), problems
