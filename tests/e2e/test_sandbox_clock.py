"""The emulator's sandbox clock (POST /sandbox/clock) moves business time for the
emulator and for the gateway that follows it: a 30-day flow plays in seconds, with the
gateway finishing an order a day before the channel's own unfreeze."""

from __future__ import annotations

from datetime import timedelta

from gateway.api import SERVICES
from tests.support import balances, pay_order, wait_until

DAY_S = 86_400
SET_COMMISSION = "UPDATE tenants SET commission_bps = $2, auto_split = true WHERE sub_mchid = $1"


async def _clock(mall, body: dict) -> tuple[int, dict]:
    async with mall.session.post(mall.emulator_url + "/sandbox/clock", json=body) as resp:
        return resp.status, await resp.json()


async def _channel_funds(mall, store: str) -> dict:
    async with mall.session.get(f"{mall.emulator_url}/sandbox/merchants/{store}/funds") as resp:
        assert resp.status == 200
        return await resp.json()


async def test_a_30_day_flow_on_the_sandbox_clock(make_mall):
    mall = await make_mall(sandbox_clock_poll_s=0.05)
    svc = mall.gateway_app[SERVICES]
    store, mall_mchid = mall.stores[0], mall.settings.sp_mchid
    async with mall.pool.acquire() as conn:
        await conn.execute(SET_COMMISSION, store, 800)
    transaction_id = await pay_order(mall, store, "CLOCK-0001", 20_000)

    status, read = await _clock(mall, {})
    assert (status, read["offset_s"]) == (200, 0)
    status, moved = await _clock(mall, {"advance_s": 28 * DAY_S})
    assert (status, moved["offset_s"]) == (200, 28 * DAY_S)

    async def followed(offset_s: int):
        return svc.clock() - svc.signature_clock() >= timedelta(seconds=offset_s - 1)

    await wait_until(lambda: followed(28 * DAY_S), what="the gateway follows the sandbox clock")
    books = await balances(mall.pool, mall_mchid)
    assert books.get("mall:commission", 0) == 0, "day 28: nothing is due yet"
    assert books[f"tenant:{store}:frozen"] == 20_000 - 120

    # Day 29 and a minute: past the gateway's finish (a day before the channel's unfreeze).
    await _clock(mall, {"advance_s": DAY_S + 60})

    async def finished():
        books = await balances(mall.pool, mall_mchid)
        return books if books.get("mall:commission") == 1_600 and books[f"tenant:{store}:frozen"] == 0 else None

    books = await wait_until(finished, timeout_s=15, what="the order finished on day 29")
    assert books[f"tenant:{store}:available"] == 20_000 - 120 - 1_600
    at_channel = await _channel_funds(mall, store)
    assert (at_channel["frozen_fen"], at_channel["available_fen"]) == (0, 20_000 - 120 - 1_600)
    left = await mall.app.get(f"/v3/profitsharing/transactions/{transaction_id}/amounts")
    assert left.json["unsplit_amount"] == 0

    # Past the channel's own unfreeze: nothing was left for it, the books still agree.
    await _clock(mall, {"advance_s": 2 * DAY_S})
    await wait_until(lambda: followed(31 * DAY_S + 60), what="the gateway follows again")
    at_channel = await _channel_funds(mall, store)
    assert (at_channel["frozen_fen"], at_channel["available_fen"]) == (0, 20_000 - 120 - 1_600)
    assert await balances(mall.pool, mall_mchid) == books


async def test_the_sandbox_clock_only_goes_forward_and_within_bounds(make_mall):
    mall = await make_mall()
    for body in ({"advance_s": -1}, {"advance_s": 401 * DAY_S}, {"advance_s": 1, "frozen_time": "x"},
                 {"frozen_time": "2020-01-01T00:00:00+08:00"}, {"frozen_time": "tomorrow"}):
        status, answer = await _clock(mall, body)
        assert status == 400 and answer["code"] == "PARAM_ERROR", (body, answer)
    status, answer = await _clock(mall, {})
    assert (status, answer["offset_s"]) == (200, 0), "refused moves change nothing"
