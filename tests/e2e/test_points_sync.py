"""Each points change reaches WeChat's business-circle points API exactly once, though
the channel fails, loses an answer, and two gateways run the sync at once."""

from __future__ import annotations

from gateway.api import SERVICES
from gateway.services import points
from points import repo as points_repo
from tests.e2e.test_coupons import pay
from tests.e2e.test_order_flow import wait_for


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
