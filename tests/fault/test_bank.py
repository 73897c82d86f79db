"""A bank test in the spirit of Jepsen: payments, splits, refunds and balance reads run
concurrently while faults are injected (connections terminated, the gateway killed -9
and restarted, PostgreSQL stopped and started when the run controls it). Every trial
balance that is answered must sum to zero per currency — on every read, not only at the
end — and afterwards the ledger invariants hold."""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
import asyncpg
import pytest

from gateway.invariants import check_invariants
from gateway.db import DATABASE_UNAVAILABLE
from tests.fault.harness import SP_MCHID, Stack, Tally, settled

pytestmark = pytest.mark.timeout(150)
RUN_S = 12.0
READ_INTERVAL_S = 0.1
TRIAL_BALANCE = "/v3/mall/ledger/trial-balance"


async def reader(stack: Stack, stop: asyncio.Event, reads: list, unbalanced: list) -> None:
    while not stop.is_set():
        try:
            reply = await stack.finance.get(TRIAL_BALANCE)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            await asyncio.sleep(READ_INTERVAL_S)
            continue
        assert reply.status in (200, 503), (reply.status, reply.body[:200])
        if reply.status == 200:
            body = reply.json
            sums: dict[str, int] = {}
            for account in body["accounts"]:
                sums[account["currency"]] = sums.get(account["currency"], 0) + account["balance"]
            reads.append(sums)
            if any(sums.values()) or not body["balanced"] or body["totals"] != sums:
                unbalanced.append(body)
        await asyncio.sleep(READ_INTERVAL_S)


async def paid_orders(stack: Stack) -> list[tuple[str, str, str, int]]:
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetch("SELECT sub_mchid, out_trade_no, transaction_id, total_fen FROM orders "
                                "WHERE state = 'SUCCESS' ORDER BY random() LIMIT 20")
    finally:
        await conn.close()
    return [(r["sub_mchid"], r["out_trade_no"], r["transaction_id"], r["total_fen"]) for r in rows]


async def splitter_and_refunder(stack: Stack, stop: asyncio.Event, outcomes: dict) -> None:
    rng = random.Random(7)
    done: set[str] = set()
    while not stop.is_set():
        try:
            candidates = [o for o in await paid_orders(stack) if o[1] not in done]
        except (*DATABASE_UNAVAILABLE, asyncpg.PostgresError):  # the database is a fault target too
            await asyncio.sleep(0.2)
            continue
        for store, out_trade_no, transaction_id, total in candidates[:3]:
            done.add(out_trade_no)
            try:
                if rng.random() < 0.5:
                    reply = await stack.client.post("/v3/profitsharing/orders", {
                        "sub_mchid": store, "transaction_id": transaction_id, "out_order_no": f"S{out_trade_no}",
                        "unfreeze_unsplit": False, "receivers": [{
                            "type": "MERCHANT_ID", "account": SP_MCHID, "amount": max(1, total // 10),
                            "description": "commission"}]})
                    kind = "split"
                else:
                    reply = await stack.client.post("/v3/refund/domestic/refunds", {
                        "sub_mchid": store, "out_trade_no": out_trade_no, "out_refund_no": f"R{out_trade_no}",
                        "reason": "bank test", "amount": {"refund": max(1, total // 2), "total": total,
                                                          "currency": "CNY"}})
                    kind = "refund"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                outcomes["connection_error"] = outcomes.get("connection_error", 0) + 1
                continue
            assert reply.status != 500, (kind, reply.status, reply.body[:300])
            key = f"{kind}_{reply.status}"
            outcomes[key] = outcomes.get(key, 0) + 1
        await asyncio.sleep(0.1)


async def faults(stack: Stack) -> None:
    await asyncio.sleep(2.0)
    for _ in range(3):
        await stack.terminate_connections()
        await asyncio.sleep(0.5)
    await stack.kill_gateway()
    await asyncio.sleep(0.5)
    await stack.start_gateway()
    await asyncio.sleep(1.0)
    if stack.controls_server:
        await stack.stop_database()
        await asyncio.sleep(2.0)
        await stack.start_database()
        await stack.ready_after(30)


async def test_balances_sum_to_zero_on_every_read_while_faults_hit(stack):
    tally, stop = Tally(), asyncio.Event()
    reads: list = []
    unbalanced: list = []
    outcomes: dict = {}
    tasks = [asyncio.create_task(stack.buyer(tally, f"BK{n}X", stop)) for n in range(3)]
    tasks += [asyncio.create_task(reader(stack, stop, reads, unbalanced)) for _ in range(2)]
    tasks.append(asyncio.create_task(splitter_and_refunder(stack, stop, outcomes)))
    started = time.monotonic()
    try:
        await faults(stack)
        await asyncio.sleep(max(0.0, RUN_S - (time.monotonic() - started)))
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    print("bank test:", len(reads), "balance reads;", outcomes, "; orders paid:", len(tally.paid_at))
    assert unbalanced == [], unbalanced[:2]
    assert len(reads) >= 20, len(reads)
    assert any(reads[-1].values()) is False
    assert outcomes.get("split_200", 0) + outcomes.get("refund_200", 0) > 0, outcomes
    await settled(stack, tally, wait_s=30)
    conn = await asyncpg.connect(stack.database_url)
    try:
        assert await check_invariants(conn) == []
    finally:
        await conn.close()
