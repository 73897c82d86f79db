"""The cap the gateway enforces is the lower of the contract's and the channel's own
(merchant-configs): a split the channel would refuse is refused up front, and
merchant-configs answers what the channel will actually accept."""

from __future__ import annotations

from tests.support import balances, pay_order, wait_until


async def _set_channel_cap(mall, sub_mchid: str, max_ratio: int) -> None:
    async with mall.session.post(mall.emulator_url + "/sandbox/merchant-configs",
                                 json={"sub_mchid": sub_mchid, "max_ratio": max_ratio}) as resp:
        assert resp.status == 200, await resp.text()


async def _split(mall, store: str, transaction_id: str, out_order_no: str, amount: int):
    return await mall.app.post("/v3/profitsharing/orders", {
        "sub_mchid": store, "transaction_id": transaction_id, "out_order_no": out_order_no,
        "unfreeze_unsplit": False, "receivers": [{"type": "MERCHANT_ID", "account": mall.settings.sp_mchid,
                                                  "amount": amount, "description": "品牌分成"}]})


async def test_a_split_above_the_channels_own_cap_is_refused_until_the_channel_allows_it(make_mall):
    mall = await make_mall(channel_cap_fresh_s=0)
    store = mall.stores[0]
    approved = await mall.admin.post(f"/v3/mall/tenants/{store}/approvals", {
        "approved_by": "mall finance director", "reason": "franchise contract", "max_ratio_bps": 6000})
    assert approved.status == 200, approved.json
    config = await mall.app.get(f"/v3/profitsharing/merchant-configs/{store}")
    assert config.json == {"sub_mchid": store, "max_ratio": 3000}, "the channel still caps the store at 30 %"

    transaction_id = await pay_order(mall, store, "CHCAP-0001", 10_000)
    refused = await _split(mall, store, transaction_id, "CC-1", 6_000)
    assert refused.status == 400 and refused.json["detail"] == {
        "reason": "ratio_exceeded", "asked": 6_000, "allowed": 3_000, "reserved": 0, "cap": 3_000, "already": 0}

    await _set_channel_cap(mall, store, 6000)
    config = await mall.app.get(f"/v3/profitsharing/merchant-configs/{store}")
    assert config.json == {"sub_mchid": store, "max_ratio": 6000}
    accepted = await _split(mall, store, transaction_id, "CC-2", 6_000)
    assert accepted.status == 200, accepted.json

    async def split_done():
        return (await balances(mall.pool, mall.settings.sp_mchid)).get("mall:commission") == 6_000

    await wait_until(split_done, what="the 60 % split")
    # The channel's word is asked at most once per freshness period.
    async with mall.pool.acquire() as conn:
        assert await conn.fetchval("SELECT max_ratio_bps FROM channel_caps WHERE sub_mchid = $1", store) == 6000
