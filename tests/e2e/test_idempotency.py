"""out_trade_no is an idempotency key (SPEC 2.4): a storm of concurrent identical creates
makes one order each, and every duplicate that succeeds gets the very same bytes."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict

from tests.support import order_body, table_counts

CREATE = "/v3/pay/partner/transactions/jsapi"
ORDERS = 50
DUPLICATES = 20
RETRYABLE = (409, 429)


async def test_concurrent_identical_creates_make_one_order_each(make_mall):
    # A thousand requests at once queue for connections far longer than the default wait
    # (answered 503 past it, see test_robustness); this test is about duplicates, not shedding.
    mall = await make_mall(db_pool_size_max=16, db_acquire_timeout_ms=120_000)
    assert mall.settings.db_pool_size_max == 16
    stores = mall.stores
    keys = [(stores[i % len(stores)], f"STORM-{i:04d}") for i in range(ORDERS)]
    bodies = {key: json.dumps(order_body(mall, key[0], key[1], 100 + i)).encode() for i, key in enumerate(keys)}

    async def create(key):
        # A fresh nonce and signature per request: these are retries, not replays.
        return key, await mall.app.post(CREATE, raw=bodies[key])

    replies = await asyncio.gather(*(create(key) for key in keys for _ in range(DUPLICATES)))

    by_key = defaultdict(list)
    for key, reply in replies:
        by_key[key].append(reply)
    statuses = sorted({reply.status for _, reply in replies})
    assert all(status == 200 or status in RETRYABLE for status in statuses), statuses
    for key, answers in by_key.items():
        ok = [reply.body for reply in answers if reply.status == 200]
        assert ok, f"{key}: no duplicate succeeded"
        assert len(set(ok)) == 1, f"{key}: {len(set(ok))} different bodies"
        for reply in answers:
            if reply.status != 200:
                assert reply.json["code"] in ("INVALID_REQUEST", "FREQUENCY_LIMITED"), reply.json

    async with mall.pool.acquire() as conn:
        rows = await conn.fetch("SELECT sub_mchid, out_trade_no, prepay_id, total_fen FROM orders")
    assert len(rows) == ORDERS
    stored = {(r["sub_mchid"], r["out_trade_no"]): r for r in rows}
    assert set(stored) == set(keys)
    for i, key in enumerate(keys):
        sent = json.loads(next(r.body for r in by_key[key] if r.status == 200))
        assert sent["prepay_id"] == stored[key]["prepay_id"]
        assert stored[key]["total_fen"] == 100 + i
    assert len({r["prepay_id"] for r in rows}) == ORDERS
    # Orders only: no money moved, nothing to notify.
    counts = await table_counts(mall.pool)
    assert (counts["transfers"], counts["outbox"]) == (0, 0)


async def test_same_out_trade_no_with_a_changed_field_is_refused(mall):
    store = mall.stores[0]
    first = await mall.app.post(CREATE, order_body(mall, store, "REUSE-0001", 1000))
    assert first.status == 200, first.json
    again = await mall.app.post(CREATE, order_body(mall, store, "REUSE-0001", 1000))
    assert (again.status, again.body) == (200, first.body)
    async with mall.pool.acquire() as conn:
        stored = dict(await conn.fetchrow("SELECT * FROM orders WHERE out_trade_no = 'REUSE-0001'"))

    changes = [
        {"amount": {"total": 1001, "currency": "CNY"}},
        {"description": "Coffee beans 500g"},
        {"payer": {"sp_openid": "oAnotherShopper0000000000000"}},
        {"attach": "gift"},
    ]
    for change in changes:
        reply = await mall.app.post(CREATE, order_body(mall, store, "REUSE-0001", 1000, **change))
        assert reply.status == 400, (change, reply.json)
        assert reply.json["code"] == "INVALID_REQUEST"
        assert reply.json["detail"]["reason"] == "out_trade_no_reused", reply.json

    async with mall.pool.acquire() as conn:
        after = dict(await conn.fetchrow("SELECT * FROM orders WHERE out_trade_no = 'REUSE-0001'"))
        assert await conn.fetchval("SELECT count(*) FROM orders") == 1
    assert after == stored
    # The same out_trade_no at another store is another order.
    other = await mall.app.post(CREATE, order_body(mall, mall.stores[1], "REUSE-0001", 1001))
    assert other.status == 200 and other.json["prepay_id"] != first.json["prepay_id"]
    queried = await mall.app.get(f"/v3/pay/partner/transactions/out-trade-no/REUSE-0001"
                                 f"?sp_mchid={mall.settings.sp_mchid}&sub_mchid={store}")
    assert queried.json["amount"]["total"] == 1000
    assert queried.json["trade_state"] == "NOTPAY"
