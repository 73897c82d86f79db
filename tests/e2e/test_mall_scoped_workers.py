"""Two malls' gateways on one database: each one's background workers (outbox, unpaid-order
check, scheduler, points sync) claim only their own mall's rows, so one mall's gateway
never notifies, queries the channel about, or runs the jobs of another mall."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import timedelta

from gateway.api import SERVICES
from gateway.app import OUTBOX, utc_now
from gateway.outbox import OutboxDelivery, lease_s
from gateway.repo import jobs as jobs_repo
from gateway.repo import orders as orders_repo
from gateway.repo import outbox as outbox_repo
from gateway.services import onboarding, payments
from gateway.services import points as points_service
from points import repo as points_repo
from tests.e2e.test_coupons import notified, pay
from tests.support import NotificationSink, add_tenant, open_notification, register_client

OTHER_MALL = "1900000777"
OTHER_STORE = "1900000888"
OTHER_REF = f"{OTHER_STORE}/OTHER-0001"


async def _other_malls_rows(pool, client_id: str, notify_url: str, now) -> None:
    """One due row of each background kind, of a second mall on the same database."""
    async with pool.acquire() as conn:
        order = await orders_repo.insert_order(conn, {
            "mall_id": OTHER_MALL, "sub_mchid": OTHER_STORE, "out_trade_no": "OTHER-0001", "client_id": client_id,
            "request_hash": "h", "sp_appid": "wxother", "sub_appid": None, "description": "other mall's order",
            "total_fen": 100, "currency": "CNY", "payer_sp_openid": "oOther", "payer_sub_openid": None,
            "notify_url": notify_url, "attach": None, "profit_sharing": False,
            "time_expire": now + timedelta(hours=1), "mall_info": {}, "created_at": now - timedelta(hours=1),
            "next_check_at": now - timedelta(minutes=1)})
        assert order is not None
        await outbox_repo.insert_order_event(
            conn, order_key=(OTHER_MALL, OTHER_STORE, "OTHER-0001"), notification_id=uuid.uuid4(),
            event_type="REFUND.SUCCESS", ref=OTHER_REF, summary="退款成功", original_type="refund",
            resource={"out_trade_no": "OTHER-0001"}, now=now - timedelta(seconds=1))
        await conn.execute("INSERT INTO jobs (mall_id, kind, ref, due_at, created_at) VALUES ($1, $2, $3, $4, $4)",
                           OTHER_MALL, "finish_order", OTHER_REF, now - timedelta(seconds=1))
        await points_repo.insert_sync(conn, {
            "mall_id": OTHER_MALL, "kind": "points_earn", "ref": OTHER_REF, "sub_mchid": OTHER_STORE,
            "transaction_id": "4200000000000000000000000001", "appid": "wxother", "openid": "oOther",
            "earn_points": True, "increased_points": 1, "points_update_time": (now - timedelta(seconds=1)).isoformat(),
            "no_points_remarks": None, "account": "points:member:other"})


async def _snapshot(pool):
    async with pool.acquire() as conn:
        return {
            "order": tuple(await conn.fetchrow(
                "SELECT state, next_check_at FROM orders WHERE mall_id = $1", OTHER_MALL)),
            "outbox": tuple(await conn.fetchrow(
                "SELECT state, attempts, next_attempt_at FROM outbox WHERE mall_id = $1", OTHER_MALL)),
            "job": tuple(await conn.fetchrow("SELECT state, attempts, due_at FROM jobs WHERE mall_id = $1", OTHER_MALL)),
            "points_sync": tuple(await conn.fetchrow(
                "SELECT state, attempts, next_attempt_at FROM points_syncs WHERE mall_id = $1", OTHER_MALL)),
        }


async def test_each_malls_gateway_claims_only_its_own_rows(make_mall, aiohttp_server):
    mall = await make_mall(points_sync_poll_interval_ms=20)  # its workers poll every 20-200 ms
    pool = mall.pool
    await onboarding.ensure_mall(pool, OTHER_MALL, "wxother", "Other mall")
    await add_tenant(pool, OTHER_MALL, OTHER_STORE)
    other_client = await register_client(pool, mall_id=OTHER_MALL, role="mall_app", name="other mall's app")
    other_sink = NotificationSink()
    other_notify_url = str((await aiohttp_server(other_sink.app())).make_url("/notify"))
    now = utc_now()
    await _other_malls_rows(pool, other_client.mchid, other_notify_url, now)
    before = await _snapshot(pool)

    # The first mall's gateway runs as usual: its own payment is notified ...
    store = mall.stores[0]
    await pay(mall, store, "OWN-000001", 100)
    await notified(mall, "OWN-000001")
    await asyncio.sleep(1.0)  # many passes of every loop (unpaid-order check every 0.2 s)
    # ... and the second mall's rows were never claimed by it.
    assert await _snapshot(pool) == before
    assert other_sink.received == []

    # The second mall's gateway (same code, its own mall) claims exactly its own rows.
    svc = mall.gateway_app[SERVICES]
    other = dataclasses.replace(svc, settings=svc.settings.with_(sp_mchid=OTHER_MALL))
    delivery = OutboxDelivery(other, mall.session)
    assert await delivery.deliver_due() == 1
    await delivery.flush()
    [(headers, body)] = other_sink.received
    assert open_notification(headers, body, mall.gateway_public_key, other_client.apiv3_key)["resource"] == {
        "out_trade_no": "OTHER-0001"}
    later = utc_now() + timedelta(seconds=1)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT state FROM outbox WHERE mall_id = $1", OTHER_MALL) == "delivered"
        jobs = await jobs_repo.claim_due(conn, OTHER_MALL, later, later + timedelta(minutes=1), 10)
        unpaid = await orders_repo.claim_due_unpaid(conn, OTHER_MALL, later, later + timedelta(minutes=1), 10)
        syncs = await points_repo.claim_due_syncs(conn, OTHER_MALL, later, later + timedelta(minutes=1), 10)
        assert await jobs_repo.dead_count(conn, OTHER_MALL) == 0
    assert [(j["mall_id"], j["ref"]) for j in jobs] == [(OTHER_MALL, OTHER_REF)]
    assert [(o["mall_id"], o["out_trade_no"]) for o in unpaid] == [(OTHER_MALL, "OTHER-0001")]
    assert [(s["mall_id"], s["ref"]) for s in syncs] == [(OTHER_MALL, OTHER_REF)]
    # The passes themselves, run as the second mall, find nothing more of theirs due (all
    # leased above) and touch nothing of the first mall.
    assert await payments.check_due_unpaid_orders(other) == 0
    assert await points_service.sync_due(other) == 0


async def test_a_row_handed_over_is_delivered_without_a_claim_and_recorded_by_the_next(mall):
    """A statement that makes a notification due and leases it to this process (as the
    release of a held TRANSACTION.SUCCESS can) hands it to delivery directly: no worker
    could claim it (its lease is in the future), yet it arrives once and is recorded."""
    outbox = mall.gateway_app[OUTBOX]
    now = utc_now()
    lease_until = now + timedelta(seconds=lease_s(mall.settings))
    columns = ", ".join(outbox_repo.CLAIMED_COLUMNS)
    async with mall.pool.acquire() as conn:
        await pay(mall, mall.stores[0], "HAND-000001", 100)
        await notified(mall, "HAND-000001")
        row = await conn.fetchrow(
            "INSERT INTO outbox (mall_id, notification_id, client_id, notify_url, event_type, ref, summary,"
            " original_type, resource, next_attempt_at, created_at)"
            " SELECT mall_id, $1, client_id, $2, 'REFUND.SUCCESS', $3, '退款成功', 'refund', '{\"n\": 1}', $4, $5"
            "   FROM orders WHERE mall_id = $6 AND out_trade_no = 'HAND-000001'"
            f" RETURNING {columns}",
            uuid.uuid4(), mall.notify_url, f"{mall.stores[0]}/HANDREFUND", lease_until, now, mall.settings.sp_mchid)
    received = len(mall.sink.received)
    outbox.hand_over(row)

    async def recorded():
        async with mall.pool.acquire() as conn:
            return await conn.fetchrow("SELECT state, attempts, next_attempt_at FROM outbox WHERE event_id = $1",
                                       row["event_id"])
    for _ in range(200):
        state = await recorded()
        if state["state"] == "delivered":
            break
        await asyncio.sleep(0.02)
    assert tuple(state) == ("delivered", 1, lease_until)  # never claimed: the lease was never moved
    assert len(mall.sink.received) == received + 1
    headers, body = mall.sink.received[-1]
    assert open_notification(headers, body, mall.gateway_public_key, mall.app.creds.apiv3_key)["resource"] == {"n": 1}
