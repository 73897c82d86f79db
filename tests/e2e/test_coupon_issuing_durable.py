"""Issuing survives the process that took the payment: the payment's own transaction
writes an issuing intent, and a worker of any process takes it over when issuing did not
finish (the process died right after the commit, issuing failed). Exactly once per
payment, budgets never overspent, the held notification goes out either way; and the
normal path costs one database transaction per payment."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import timedelta

from gateway.api import SERVICES
from gateway.services import coupon_issuing
from tests.e2e.test_coupons import SHOPPER, campaign_body, member_coupons, notified, pay
from tests.support import send_unsigned, wait_until

FAST_RETRY = {"coupon_holdout_bps": 0, "coupon_issue_budget_ms": 200, "coupon_issue_retry_after_ms": 300,
              "coupon_issue_poll_interval_ms": 100}


async def _rows(mall, query: str, *args):
    async with mall.pool.acquire() as conn:
        return await conn.fetch(query, *args)


async def _campaigns(mall, *stores) -> list[int]:
    ids = []
    for store in stores:
        created = await mall.admin.post("/v3/mall/coupon-campaigns", campaign_body(
            store, discount={"type": "amount_off", "amount": 500}, budget={"amount": 5000, "count": 10}))
        assert created.status == 200, created.json
        ids.append(int(created.json["campaign_id"]))
    return ids


async def test_a_process_dying_between_the_payment_and_issuing_loses_no_coupons(make_mall, monkeypatch):
    mall = await make_mall(**FAST_RETRY)
    a, b, c = mall.stores
    campaign_ids = await _campaigns(mall, b, c)
    # The process dies right after the payment commits: issuing never starts there.
    monkeypatch.setattr(coupon_issuing, "start", lambda svc, key: None)
    await pay(mall, a, "CRASH-A-0001", 5000)
    event = await notified(mall, "CRASH-A-0001")  # released at the hold's deadline, without coupons
    assert event["resource"]["trade_state"] == "SUCCESS" and "coupons" not in event["resource"]["mall_info"]

    coupons = await member_coupons(mall, 2)  # a worker took the intent over
    assert sorted(cp["sub_mchid"] for cp in coupons) == [b, c]
    assert await _rows(mall, "SELECT * FROM coupon_issue_intents") == []
    (decision,) = await _rows(mall, "SELECT * FROM coupon_decisions WHERE out_trade_no = 'CRASH-A-0001'")
    assert decision["held_out"] is False and sorted(decision["campaign_ids"]) == sorted(campaign_ids)
    budgets = await _rows(mall, "SELECT committed_fen, committed_count FROM coupon_campaigns ORDER BY campaign_id")
    assert [tuple(r) for r in budgets] == [(500, 1), (500, 1)]

    # Later passes find nothing more to do: issued once.
    svc = mall.gateway_app[SERVICES]
    assert await coupon_issuing.retry_due(_later(svc, seconds=3600)) == 0
    assert len(await _rows(mall, "SELECT * FROM coupons")) == 2
    assert await mall.invariants() == []


async def test_the_worker_and_the_paying_process_racing_issue_once(make_mall, monkeypatch):
    mall = await make_mall(coupon_holdout_bps=0, coupon_issue_budget_ms=200, coupon_issue_retry_after_ms=60_000,
                           db_pool_size_max=16)
    a, b, c = mall.stores
    await _campaigns(mall, b, c)
    monkeypatch.setattr(coupon_issuing, "start", lambda svc, key: None)  # issuing held back, then raced below
    keys = []
    for i in range(6):
        await pay(mall, a, f"RACE-A-{i:04d}", 5000, payer={"sp_openid": f"oRace{i}"})
        keys.append((mall.settings.sp_mchid, a, f"RACE-A-{i:04d}"))
    await wait_until(lambda: _count(mall, "SELECT count(*) FROM coupon_issue_intents", 6), what="the intents")
    svc = mall.gateway_app[SERVICES]
    later = _later(svc, seconds=120)  # the intents are due for the worker
    await asyncio.gather(coupon_issuing.retry_due(later), coupon_issuing.retry_due(later),
                         *(coupon_issuing.issue_after_payment(svc, key) for key in keys))
    per_payment = await _rows(mall, "SELECT trigger_out_trade_no, count(*) AS n FROM coupons"
                                    " GROUP BY trigger_out_trade_no")
    assert len(per_payment) == 6 and {r["n"] for r in per_payment} == {2}
    assert await _count(mall, "SELECT count(*) FROM coupon_decisions", 6)
    assert await _rows(mall, "SELECT * FROM coupon_issue_intents") == []
    budgets = await _rows(mall, "SELECT committed_fen, committed_count FROM coupon_campaigns")
    assert {tuple(r) for r in budgets} == {(3000, 6)}
    assert await mall.invariants() == []


async def test_issuing_that_keeps_failing_is_retried_with_backoff_then_dead(make_mall, monkeypatch):
    mall = await make_mall(coupon_holdout_bps=0, coupon_issue_budget_ms=200, coupon_issue_retry_after_ms=60_000,
                           coupon_issue_attempts_max=2)
    a, b = mall.stores[0], mall.stores[1]
    await _campaigns(mall, b)
    svc = mall.gateway_app[SERVICES]

    class Broken:
        def rank(self, **_):
            raise RuntimeError("model broke")
    svc.coupons.model = Broken()
    await pay(mall, a, "BROKEN-A-01", 5000)
    event = await notified(mall, "BROKEN-A-01")
    assert "coupons" not in event["resource"]["mall_info"]
    (intent,) = await _rows(mall, "SELECT * FROM coupon_issue_intents")
    assert (intent["state"], intent["attempts"]) == ("pending", 0)  # the failed attempt wrote nothing

    assert await coupon_issuing.retry_due(_later(svc, seconds=120)) == 1
    (intent,) = await _rows(mall, "SELECT * FROM coupon_issue_intents")
    assert (intent["state"], intent["attempts"]) == ("pending", 1)
    assert "model broke" in intent["last_error"]
    assert await coupon_issuing.retry_due(_later(svc, seconds=121)) == 0  # backing off
    assert await coupon_issuing.retry_due(_later(svc, seconds=600)) == 1
    (intent,) = await _rows(mall, "SELECT * FROM coupon_issue_intents")
    assert (intent["state"], intent["attempts"]) == ("dead", 2)
    ready = await send_unsigned(mall.app, "GET", "/health/ready")
    assert ready.status == 200 and ready.json["checks"]["dead_coupon_issues"] == {"ok": True, "required": False,
                                                                                    "count": 1}
    assert await coupon_issuing.retry_due(_later(svc, seconds=36000)) == 0
    assert await _rows(mall, "SELECT * FROM coupons") == []
    assert await mall.invariants() == []


async def test_issuing_costs_one_database_transaction(make_mall, monkeypatch):
    """Reading the payment, the campaigns and the history, the hold-out decision, the
    coupons and their budgets, and releasing the held notification with them: one
    transaction. A payment no campaign could reward costs issuing nothing at all."""
    mall = await make_mall(coupon_holdout_bps=0, coupon_issue_budget_ms=30_000, coupon_issue_retry_after_ms=60_000)
    a, b, c = mall.stores
    started = []
    monkeypatch.setattr(coupon_issuing, "start", lambda svc, key: started.append(key))
    svc = mall.gateway_app[SERVICES]
    counting = _CountingPool(svc.pool)
    issuing = dataclasses.replace(svc, pool=counting)

    await _campaigns_known(svc)
    await pay(mall, a, "COST-A-0001", 5000)  # no campaign yet
    event = await notified(mall, "COST-A-0001")  # not held for its 30 s
    assert "coupons" not in event["resource"]["mall_info"]
    assert started == [] and await _rows(mall, "SELECT * FROM coupon_issue_intents") == []

    at_b, _ = await _campaigns(mall, b, c)
    await pay(mall, a, "COST-A-0002", 5000)
    await _intent_written(mall, "COST-A-0002")
    assert started == [(mall.settings.sp_mchid, a, "COST-A-0002")]
    issued = await coupon_issuing.issue_after_payment(issuing, started[0])
    assert len(issued) == 2 and counting.transactions == 1
    event = await notified(mall, "COST-A-0002")  # released with its coupons, long before its hold ends
    assert sorted(cp["sub_mchid"] for cp in event["resource"]["mall_info"]["coupons"]) == [b, c]
    assert (await mall.app.get(f"/v3/mall/members/{SHOPPER}/coupons")).json["total_count"] == 2
    assert await _rows(mall, "SELECT * FROM coupon_issue_intents") == []

    ended = await mall.admin.request("PATCH", f"/v3/mall/coupon-campaigns/{at_b}", {"state": "ended"})
    assert ended.status == 200, ended.json
    started.clear()
    await pay(mall, b, "COST-B-0003", 5000)  # C's campaign: per-shopper limit spent, but it could issue
    await _intent_written(mall, "COST-B-0003")
    await pay(mall, c, "COST-C-0004", 5000)  # B's campaign ended: nothing can reward a payment at C
    await notified(mall, "COST-C-0004")
    assert [key[2] for key in started] == ["COST-B-0003"]
    assert await mall.invariants() == []


async def test_only_a_payment_not_held_for_coupons_wakes_the_outbox(make_mall, monkeypatch):
    """A payment no campaign could reward is not held: it wakes the outbox, which sends its
    notification now. A held one does not (the claim would find nothing due): issuing
    releases its notification and hands it to the outbox. The outbox polls every 30 s
    here, so only the wake-up or the hand-over delivers within the wait."""
    mall = await make_mall(coupon_holdout_bps=0, coupon_issue_budget_ms=30_000, coupon_issue_retry_after_ms=60_000,
                           outbox_poll_interval_ms=30_000)
    a, b, c = mall.stores
    svc = mall.gateway_app[SERVICES]
    wakeup = _WakeupSpy(svc.coupons.wakeup)
    monkeypatch.setattr(svc.coupons, "wakeup", wakeup)
    started, start = [], coupon_issuing.start
    monkeypatch.setattr(coupon_issuing, "start", lambda svc, key: (started.append(key), start(svc, key)))
    await _campaigns_known(svc)

    await pay(mall, a, "WAKE-A-0001", 5000)  # no campaign: not held
    event = await notified(mall, "WAKE-A-0001")
    assert "coupons" not in event["resource"]["mall_info"]
    assert wakeup.sets == 1 and started == []

    await _campaigns(mall, b, c)
    await pay(mall, a, "WAKE-A-0002", 5000)  # held for issuing, released with its coupons
    event = await notified(mall, "WAKE-A-0002")
    assert sorted(cp["sub_mchid"] for cp in event["resource"]["mall_info"]["coupons"]) == [b, c]
    assert started == [(mall.settings.sp_mchid, a, "WAKE-A-0002")] and wakeup.sets == 1


class _WakeupSpy:
    """The outbox's wake-up, counting who sets it."""

    def __init__(self, event: asyncio.Event):
        self._event = event
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        self._event.set()


async def _campaigns_known(svc) -> None:
    """Until the process has read its campaigns once, every payment may be rewarded (and is held)."""
    await wait_until(lambda: svc.coupons.campaigns is not None, what="the campaigns read at start")


async def _intent_written(mall, out_trade_no: str) -> None:
    await wait_until(lambda: _rows(mall, "SELECT 1 FROM coupon_issue_intents WHERE out_trade_no = $1", out_trade_no),
                     what="the payment and its issuing intent")


def _later(svc, *, seconds: float):
    """The services as a worker sees them `seconds` from now."""
    clock = svc.clock
    return dataclasses.replace(svc, clock=lambda: clock() + timedelta(seconds=seconds))


async def _count(mall, query: str, expected: int) -> bool:
    async with mall.pool.acquire() as conn:
        return await conn.fetchval(query) == expected


class _CountingPool:
    """Counts the database transactions run through it: each explicit top-level
    transaction, and each statement run outside one (its own implicit transaction)."""

    def __init__(self, pool):
        self.pool = pool
        self.transactions = 0

    @contextlib.asynccontextmanager
    async def acquire(self):
        async with self.pool.acquire() as conn:
            yield _CountingConnection(conn, self)


class _CountingConnection:
    STATEMENTS = ("execute", "executemany", "fetch", "fetchrow", "fetchval")

    def __init__(self, conn, pool: _CountingPool):
        self._conn = conn
        self._pool = pool

    def transaction(self, **kwargs):
        if not self._conn.is_in_transaction():
            self._pool.transactions += 1
        return self._conn.transaction(**kwargs)

    def __getattr__(self, name):
        attribute = getattr(self._conn, name)
        if name not in self.STATEMENTS:
            return attribute

        async def statement(*args, **kwargs):
            if not self._conn.is_in_transaction():
                self._pool.transactions += 1
            return await attribute(*args, **kwargs)
        return statement
