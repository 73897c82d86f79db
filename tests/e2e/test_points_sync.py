"""Each points change reaches WeChat's business-circle points API exactly once, though
the channel fails, loses an answer, and two gateways run the sync at once."""

from __future__ import annotations

import json

from gateway.api import SERVICES
from gateway.services import points
from points import repo as points_repo
from tests.e2e.test_coupons import pay
from tests.e2e.test_order_flow import wait_for
from tests.support import send_unsigned


async def test_a_change_is_synced_once_through_failures_and_a_lost_answer(make_mall):
    mall = await make_mall(emulator={"points_notify_failures": 2, "points_notify_lost_answers": 1},
                           points_sync_retry_base_s=0, points_sync_poll_interval_ms=20)
    store = mall.stores[0]
    paid = await pay(mall, store, "PTS-0001", 12345, payer={"sp_openid": "oPointsShopper"})  # earns 123
    async def synced():
        async with mall.pool.acquire() as conn:
            return (await points_repo.sync_counts(conn, mall.settings.sp_mchid)).get("synced") == 1
    await wait_for(synced, timeout_s=20)
    async with mall.session.get(mall.emulator_url + "/sandbox/businesscircle/points") as resp:
        book = await resp.json()
    # 2 refused, 1 recorded but its answer lost, 1 acknowledged: WeChat holds one notice.
    assert book["calls"] == 4
    assert book["data"] == [{"sub_mchid": store, "transaction_id": paid["transaction_id"],
                             "appid": mall.settings.sp_appid, "openid": "oPointsShopper", "earn_points": True,
                             "increased_points": 123, "points_update_time": book["data"][0]["points_update_time"],
                             "total_points": 123}]
    async with mall.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT attempts, state FROM points_syncs")
    assert (row["attempts"], row["state"]) == (4, "synced")
    # Another pass, from this or another process, finds nothing to send.
    assert await points.sync_due(mall.gateway_app[SERVICES]) == 0


async def test_a_dead_sync_is_listed_counted_on_readiness_and_retried_once(make_mall):
    mall = await make_mall(emulator={"points_notify_failures": 2}, points_sync_retry_base_s=0,
                           points_sync_poll_interval_ms=20, points_sync_attempts_max=2)
    store = mall.stores[0]
    await pay(mall, store, "PTS-DEAD-01", 12345, payer={"sp_openid": "oPointsShopper"})

    async def dead():
        reply = await mall.admin.get("/v3/mall/points/syncs")
        return reply.json if reply.json["total_count"] == 1 else None
    listed = await wait_for(dead, timeout_s=20)
    (sync,) = listed["data"]
    assert (sync["kind"], sync["state"], sync["attempts"], sync["increased_points"]) == ("points_earn", "dead", 2, 123)
    assert sync["last_error"] and "oPointsShopper" not in json.dumps(listed)  # no openid for operators
    ready = await send_unsigned(mall.app, "GET", "/health/ready")
    assert ready.status == 200 and ready.json["checks"]["dead_points_syncs"] == {"ok": True, "required": False,
                                                                                   "count": 1}
    assert (await mall.app.get("/v3/mall/points/syncs")).status == 403  # admins only
    assert (await mall.admin.get("/v3/mall/points/syncs?state=lost")).json["detail"]["field"] == "state"
    missing = await mall.admin.post("/v3/mall/points/syncs/999999/retry", {})
    assert missing.status == 404

    retried = await mall.admin.post(f"/v3/mall/points/syncs/{sync['sync_id']}/retry", {})
    assert retried.status == 200 and (retried.json["state"], retried.json["attempts"]) == ("pending", 0)

    async def synced():
        async with mall.pool.acquire() as conn:
            return (await points_repo.sync_counts(conn, mall.settings.sp_mchid)).get("synced") == 1
    await wait_for(synced, timeout_s=20)
    again = await mall.admin.post(f"/v3/mall/points/syncs/{sync['sync_id']}/retry", {})
    assert again.status == 400 and again.json["detail"]["reason"] == "points_sync_not_dead"
    async with mall.session.get(mall.emulator_url + "/sandbox/businesscircle/points") as resp:
        book = await resp.json()
    assert (book["calls"], len(book["data"])) == (3, 1)  # two refused, then sent once
    ready = await send_unsigned(mall.app, "GET", "/health/ready")
    assert ready.json["checks"]["dead_points_syncs"]["count"] == 0
    assert await mall.invariants() == []
