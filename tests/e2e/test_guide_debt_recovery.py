"""A guide's debt to a store (a refunded reward already paid out) is recovered from the
guide's next rewards, once: two reward jobs of one guide running at the same time, from
two gateway processes, must not both keep the same debt."""

from __future__ import annotations

import asyncio

from gateway.api import SERVICES
from gateway.services import scheduler
from ledger import repo as ledger_repo
from splitting import postings
from tests.e2e.test_splitting_flow import GUIDE_OPENID, onboard, paid_order
from tests.support import balances

STORE = "1900000301"


async def test_two_reward_jobs_of_one_indebted_guide_recover_the_debt_once(make_mall, monkeypatch):
    # The reward jobs are not due for an hour: this test runs them itself, both at once.
    mall = await make_mall(split_first_try_after_s=3600)
    await onboard(mall, STORE, guide_reward_bps=200)
    guide = await mall.admin.post("/v3/mall/guides", {"guide_id": "G001", "sub_mchid": STORE,
                                                      "openid": GUIDE_OPENID, "name": "Lin"})
    assert guide.status == 200, guide.json
    mall_id, svc = mall.settings.sp_mchid, mall.gateway_app[SERVICES]
    async with mall.pool.acquire() as conn, conn.transaction():
        # The guide owes the store 150 fen: a refunded reward that had been paid out.
        await ledger_repo.post_transfer(conn, mall_id, postings.owed_transfer(
            STORE, "RF-DEBT-0001", [("guide:G001:rewards", 150)]), svc.clock())
    for out_trade_no in ("DEBT-0001", "DEBT-0002"):
        await paid_order(mall, STORE, out_trade_no, 10_000, guide_id="G001")  # a reward of 200 each

    # Each job reads the guide's debt, then waits (at most a second) for the other to have
    # read it too: without a lock per guide, both decide on the same debt.
    reads, both_read = [], asyncio.Event()
    balance_fen = ledger_repo.balance_fen

    async def debt_read_together(conn, mall_id_, account):
        if account == "guide:G001:clawback":
            reads.append(account)
            if len(reads) >= 2:
                both_read.set()
            try:
                await asyncio.wait_for(both_read.wait(), 1)
            except asyncio.TimeoutError:
                pass
        return await balance_fen(conn, mall_id_, account)

    monkeypatch.setattr(ledger_repo, "balance_fen", debt_read_together)
    await asyncio.gather(*(scheduler.guide_reward(svc, mall_id, STORE, no) for no in ("DEBT-0001", "DEBT-0002")))

    book = await balances(mall.pool, mall_id)
    assert book["guide:G001:clawback"] == 0, "recovered exactly what was owed"
    assert book[f"tenant:{STORE}:owed_by_guides"] == 0
    async with mall.pool.acquire() as conn:
        paid = await conn.fetchval(
            "SELECT sum((p->>'amount')::int) FROM split_orders, jsonb_array_elements(parts) p"
            " WHERE mall_id = $1 AND sub_mchid = $2 AND purpose = 'guide_reward'", mall_id, STORE)
    assert paid == 2 * 200 - 150, "the two rewards less the debt, once"
    assert sum(book.values()) == 0
