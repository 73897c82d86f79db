"""Reconciliation end to end: the emulator's real bills, with lines dropped, added and
altered through its sandbox, against the gateway's books; a payment whose notification
was lost is healed; payouts are booked once however often and however concurrently the
fund-flow bills are read; finance reads the report, a store reads its own payouts only."""

from __future__ import annotations

import asyncio
import time as wall
from datetime import datetime, time, timedelta, timezone

from emulator.wire import CHINA_TZ
from gateway.api import SERVICES
from gateway.services import reconciliation
from tests.support import SignedClient, balances, order_body, register_client, wait_until

FEE_BPS = 60


class Clock:
    """One clock for the emulator and the gateway, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class ClockedClient(SignedClient):
    """Signs with the test's clock, so the gateway's replay window follows it."""

    def __init__(self, clock: Clock, other: SignedClient):
        super().__init__(other.base_url, other.creds, other.gateway_public_key, other.session)
        self.clock = clock

    def authorization(self, method, target, body, *, timestamp=None, nonce=None):
        return super().authorization(method, target, body, timestamp=timestamp or int(self.clock().timestamp()),
                                     nonce=nonce)


def at(day, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=CHINA_TZ).astimezone(timezone.utc)


async def start(make_mall, **overrides):
    day = (datetime.now(CHINA_TZ) + timedelta(days=1)).date()
    clock = Clock(at(day, 12))
    mall = await make_mall(emulator={"notify_failure_rate": 1.0}, clock=clock, query_sync_after_s=0,
                           unpaid_order_query_after_s=30 * 86400, reconcile_interval_s=3600, **overrides)
    mall.app = ClockedClient(clock, mall.app)
    mall.admin = ClockedClient(clock, mall.admin)
    return mall, clock, day


async def pay(mall, sub_mchid: str, out_trade_no: str, total_fen: int, *, tell_gateway: bool = True) -> None:
    """Shopper pays; notifications are lost, so the gateway learns of it only when asked."""
    created = await mall.app.post("/v3/pay/partner/transactions/jsapi", order_body(
        mall, sub_mchid, out_trade_no, total_fen, settle_info={"profit_sharing": False}))
    assert created.status == 200, created.json
    await mall.shopper_pays(sub_mchid, out_trade_no)
    if tell_gateway:
        queried = await mall.app.get(f"/v3/pay/partner/transactions/out-trade-no/{out_trade_no}"
                                     f"?sp_mchid={mall.settings.sp_mchid}&sub_mchid={sub_mchid}")
        assert queried.json["trade_state"] == "SUCCESS", queried.json


async def tamper(mall, day, **change) -> None:
    async with mall.session.post(mall.emulator_url + "/sandbox/bills/tamper",
                                 json={"bill_date": day.isoformat(), **change}) as resp:
        assert resp.status == 200, await resp.text()


def fee(total_fen: int) -> int:
    return (total_fen * FEE_BPS + 5000) // 10000


async def test_every_discrepancy_class_healing_and_payouts_once(make_mall):
    mall, clock, day = await start(make_mall)
    s1, s2, s3 = mall.stores
    await pay(mall, s1, "REC-MATCHED", 10_000)
    await pay(mall, s1, "REC-AMOUNT", 2_000)
    await pay(mall, s2, "REC-FEE", 3_000)
    await pay(mall, s2, "REC-STATUS", 4_000)
    await pay(mall, s3, "REC-DROPPED", 5_000)
    await pay(mall, s3, "REC-LOST-NOTICE", 6_000, tell_gateway=False)
    trade = "trade"
    await tamper(mall, day, bill=trade, action="alter_amount", match={"商户订单号": "REC-AMOUNT"}, amount_fen=2_100)
    await tamper(mall, day, bill=trade, action="alter_fee", match={"商户订单号": "REC-FEE"}, fee_fen=99)
    await tamper(mall, day, bill=trade, action="alter_status", match={"商户订单号": "REC-STATUS"}, status="REVOKED")
    await tamper(mall, day, bill=trade, action="drop", match={"商户订单号": "REC-DROPPED"})
    stranger = {"交易时间": f"{day} 13:00:00", "特约商户号": s2, "微信订单号": "4200000000000000000000000001",
                "商户订单号": "REC-NEVER-OURS", "交易状态": "SUCCESS", "订单金额": 777, "应结订单金额": 777,
                "手续费": 5, "退款金额": 0, "申请退款金额": 0, "代金券金额": 0, "充值券退款金额": 0,
                "商户退款单号": "0", "微信退款单号": "0"}
    await tamper(mall, day, bill=trade, action="add", row=stranger)
    finance = ClockedClient(clock, SignedClient(mall.gateway_url, await register_client(
        mall.pool, mall_id=mall.settings.sp_mchid, role="finance", name="finance"), mall.gateway_public_key,
        mall.session))

    clock.now = at(day + timedelta(days=1), 9, 59)
    early = await finance.post("/v3/mall/reconciliations", {"date": day.isoformat()})
    assert early.status == 500 and early.json["detail"]["reason"] == "bill_not_ready"
    clock.now = at(day + timedelta(days=1), 10, 31)
    ran = await finance.post("/v3/mall/reconciliations", {"date": day.isoformat()})
    assert ran.status == 200, ran.json
    report = ran.json
    found = {(d["class"], d["ref"]): d for d in report["discrepancies"]}
    assert set(found) == {
        ("amount_mismatch", f"{s1}/REC-AMOUNT"), ("fee_mismatch", f"{s2}/REC-FEE"),
        ("status_mismatch", f"{s2}/REC-STATUS"), ("missing_channel", f"{s3}/REC-DROPPED"),
        ("missing_ours", f"{s3}/REC-LOST-NOTICE"), ("missing_ours", f"{s2}/REC-NEVER-OURS")}
    assert report["counts"]["trade"]["matched"] == 1
    healed = found[("missing_ours", f"{s3}/REC-LOST-NOTICE")]
    assert healed["healed"] and "healed" in healed["what"]
    assert not found[("missing_ours", f"{s2}/REC-NEVER-OURS")]["healed"]
    amount = found[("amount_mismatch", f"{s1}/REC-AMOUNT")]
    assert (amount["ours"]["amount"], amount["channel"]["amount"]) == (2_000, 2_100)
    assert "never corrected automatically" in amount["action"]
    assert found[("fee_mismatch", f"{s2}/REC-FEE")]["channel"]["fee"] == 99
    book = await balances(mall.pool, mall.settings.sp_mchid)
    assert book[f"tenant:{s3}:available"] == 5_000 - fee(5_000) + 6_000 - fee(6_000)  # healed, once
    assert book[f"tenant:{s1}:available"] == 12_000 - fee(10_000) - fee(2_000)  # mismatch never "fixed"

    # Asked again: same findings, the healed one kept, nothing applied twice.
    again = await finance.post("/v3/mall/reconciliations", {"date": day.isoformat()})
    assert again.json["runs"] == 2 and len(again.json["discrepancies"]) == 6
    assert again.json["counts"]["trade"]["matched"] == 2  # the healed payment now matches
    assert await balances(mall.pool, mall.settings.sp_mchid) == book

    # Payouts at 06:00 the next day; that day's fund-flow bills are read three times, twice at once.
    next_day = day + timedelta(days=1)
    clock.now = at(next_day + timedelta(days=1), 10, 31)
    svc = mall.gateway_app[SERVICES]
    await reconciliation.reconcile_day(svc, mall.settings.sp_mchid, next_day)
    await asyncio.gather(reconciliation.reconcile_day(svc, mall.settings.sp_mchid, next_day),
                         reconciliation.reconcile_day(svc, mall.settings.sp_mchid, next_day))
    after = await balances(mall.pool, mall.settings.sp_mchid)
    for store in (s1, s2, s3):
        assert after[f"tenant:{store}:available"] == 0
        assert after[f"tenant:{store}:settled"] == book[f"tenant:{store}:available"]
    async with mall.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM transfers WHERE kind = 'payout'") == 3
    report = (await finance.get(f"/v3/mall/reconciliations/{next_day}")).json
    assert report["counts"]["fundflow"]["matched"] == 3 and report["discrepancies"] == []
    listed = (await finance.get(f"/v3/mall/reconciliations?date={next_day}")).json["data"]
    assert [r["date"] for r in listed] == [next_day.isoformat()] and listed[0]["runs"] == 3

    # A store sees its own payouts; another store's are exactly as absent as an unknown store's.
    tenant = ClockedClient(clock, SignedClient(mall.gateway_url, await register_client(
        mall.pool, mall_id=mall.settings.sp_mchid, role="tenant", sub_mchid=s1, name="store one"),
        mall.gateway_public_key, mall.session))
    window = f"from={next_day}&to={next_day}"
    own = await tenant.get(f"/v3/mall/payouts?{window}")
    assert [(p["sub_mchid"], p["amount"]) for p in own.json["data"]] == [(s1, book[f"tenant:{s1}:available"])]
    assert (await tenant.get(f"/v3/mall/payouts?sub_mchid={s1}&{window}")).json == own.json
    other = await tenant.get(f"/v3/mall/payouts?sub_mchid={s2}&{window}")
    unknown = await tenant.get(f"/v3/mall/payouts?sub_mchid=1900000999&{window}")
    assert other.status == unknown.status == 404 and other.json == unknown.json
    everyone = await finance.get(f"/v3/mall/payouts?{window}")
    assert sorted(p["sub_mchid"] for p in everyone.json["data"]) == [s1, s2, s3]
    assert (await tenant.get(f"/v3/mall/reconciliations/{next_day}")).status == 403
    assert wall.time() > 0  # the wall clock never mattered: every signature used the test's clock


async def test_daily_run_is_planned_once_and_runs_when_due(make_mall):
    mall, clock, day = await start(make_mall, reconcile_daily=True)
    svc = mall.gateway_app[SERVICES]
    await pay(mall, mall.stores[0], "DAILY-0001", 1_234)
    clock.now = at(day + timedelta(days=1), 0, 5)
    await reconciliation.plan_daily(svc)
    await reconciliation.plan_daily(svc)  # every process plans; one job results
    async with mall.pool.acquire() as conn:
        jobs = await conn.fetch("SELECT due_at, state FROM jobs WHERE kind = 'reconcile_day' AND ref = $1",
                                f"mall/{day}")
    assert [(j["due_at"], j["state"]) for j in jobs] == [(at(day + timedelta(days=1), 10, 30), "pending")]
    clock.now = at(day + timedelta(days=1), 10, 30)

    async def done():
        async with mall.pool.acquire() as conn:
            return await conn.fetchval("SELECT state = 'done' FROM jobs WHERE ref = $1", f"mall/{day}")

    await wait_until(done, timeout_s=10, what="the daily reconciliation")
    async with mall.pool.acquire() as conn:
        assert await conn.fetchval("SELECT state FROM reconciliations WHERE bill_on = $1", day) == "done"
        counts = await conn.fetchval("SELECT counts FROM reconciliations WHERE bill_on = $1", day)
    assert counts["trade"]["matched"] == 1


async def test_split_and_payout_discrepancies(make_mall):
    mall, clock, day = await start(make_mall)
    s1, s2, s3 = mall.stores
    created = await mall.app.post("/v3/pay/partner/transactions/jsapi", order_body(
        mall, s1, "REC-SPLIT", 10_000, settle_info={"profit_sharing": True}))
    assert created.status == 200, created.json
    paid = await mall.shopper_pays(s1, "REC-SPLIT")
    await mall.app.get(f"/v3/pay/partner/transactions/out-trade-no/REC-SPLIT?sp_mchid={mall.settings.sp_mchid}"
                       f"&sub_mchid={s1}")
    split = await mall.app.post("/v3/profitsharing/orders", {
        "sub_mchid": s1, "appid": mall.settings.sp_appid, "transaction_id": paid["transaction_id"],
        "out_order_no": "P-REC-1", "unfreeze_unsplit": False,
        "receivers": [{"type": "MERCHANT_ID", "account": mall.settings.sp_mchid, "amount": 500,
                       "description": "商场佣金"}]})
    assert split.status == 200, split.json

    async def commission():
        clock.now += timedelta(seconds=1)  # the gateway's split follow-up is due by this clock
        return (await balances(mall.pool, mall.settings.sp_mchid)).get("mall:commission") == 500
    await wait_until(commission, timeout_s=15, step_s=0.1, what="the split finished")
    await pay(mall, s2, "REC-PAYOUT-2", 3_000)
    await pay(mall, s3, "REC-PAYOUT-3", 4_000)
    await tamper(mall, day, bill="profitsharing", action="alter_amount", match={"商户分账/回退单号": "P-REC-1"},
                 amount_fen=501)
    await tamper(mall, day, bill="profitsharing", action="add", row={
        "分账发起时间": f"{day} 15:00:00", "分账出资方": s2, "微信订单号": "4200000000000000000000000002",
        "微信分账/回退单号": "3008000000000000000000000009", "商户分账/回退单号": "P-NOT-OURS",
        "分账接收方": mall.settings.sp_mchid, "分账金额": 300, "业务类型": "分账", "处理状态": "SUCCESS"})
    next_day = day + timedelta(days=1)
    await tamper(mall, next_day, bill=f"fundflow:{s2}", action="alter_amount", match={"业务类型": "提现"},
                 amount_fen=3_000)  # more than the store holds: 3,000 less the fee
    svc, mall_id = mall.gateway_app[SERVICES], mall.settings.sp_mchid

    clock.now = at(next_day, 10, 31)
    await reconciliation.reconcile_day(svc, mall_id, day)
    clock.now = at(next_day + timedelta(days=1), 10, 31)
    await reconciliation.reconcile_day(svc, mall_id, next_day)
    await tamper(mall, next_day, bill=f"fundflow:{s3}", action="drop", match={"业务类型": "提现"})
    await reconciliation.reconcile_day(svc, mall_id, next_day)  # s3's payout, booked, is gone from its bill

    async with mall.pool.acquire() as conn:
        items = {(r["bill_on"], r["bill"], r["class"], r["ref"]): r
                 for r in await conn.fetch("SELECT * FROM reconciliation_items")}
    assert set(items) == {
        (day, "profitsharing", "amount_mismatch", f"{s1}/P-REC-1/{mall_id}"),
        (day, "profitsharing", "missing_ours", f"{s2}/P-NOT-OURS/{mall_id}"),
        (next_day, "fundflow", "missing_ours", f"{s2}/PO{s2}{next_day:%Y%m%d}000000"),
        (next_day, "fundflow", "missing_channel", f"{s3}/PO{s3}{next_day:%Y%m%d}000001"),
    }
    refused = items[(next_day, "fundflow", "missing_ours", f"{s2}/PO{s2}{next_day:%Y%m%d}000000")]
    assert "more than the store's available balance" in refused["what"]
    book = await balances(mall.pool, mall_id)
    assert book[f"tenant:{s2}:settled"] == 0 and book[f"tenant:{s2}:available"] == 3_000 - fee(3_000)
    assert book[f"tenant:{s3}:settled"] == 4_000 - fee(4_000)  # booked once, kept: the ledger is append-only
