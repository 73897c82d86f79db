"""The gateway's scheduler: work that must happen later and must not be lost.

Jobs live in PostgreSQL (`jobs`), so they survive restarts and several gateway processes
share them: a pass claims due jobs with FOR UPDATE SKIP LOCKED and a lease. Every job is
bounded: a handler runs under a timeout, failures retry with capped exponential backoff,
and after `job_attempts_max` attempts the job is `dead` and visible to operators.

Kinds: `guide_reward` (the instant split to the shopping guide, as soon as the channel
allows), `finish_order` (commission by contract and the rest unfrozen before the
channel's auto-unfreeze), `sync_split` (follow a split until the channel finishes it),
`refund_step` (split returns, then the refund, until the channel reports the end),
`reconcile_day` (the day's bills against our books, once the channel has them).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import structlog

from gateway.channel import ChannelError
from gateway.errors import ApiError
from gateway.repo import jobs as jobs_repo
from gateway.repo import orders as orders_repo
from gateway.repo import splitting as repo
from gateway.repo import tenants as tenants_repo
from gateway.repo import guides as guides_repo
from gateway.services import reconciliation, refunds, splits
from gateway.services.context import Services
from gateway.services.receivers import ensure_mall_receiver
from ledger import accounts
from ledger import repo as ledger_repo
from splitting import funds as order_funds
from splitting import postings
from splitting.rules import share_fen

log = structlog.get_logger(__name__)
JOB_TIMEOUT_S = 30
BACKOFF_EXPONENT_MAX = 6
ERROR_CHARS_MAX = 200


async def run_due_jobs(svc: Services) -> int:
    """One pass: claim up to `jobs_batch_max` due jobs and run each once."""
    settings = svc.settings
    now = svc.clock()
    async with svc.pool.acquire() as conn:
        jobs = await jobs_repo.claim_due(conn, now, now + timedelta(seconds=JOB_TIMEOUT_S * 2),
                                         settings.jobs_batch_max)
    for job in jobs:
        await _run(svc, job)
    return len(jobs)


async def _run(svc: Services, job) -> None:
    handler = HANDLERS[job["kind"]]
    sub_mchid, _, key = job["ref"].partition("/")
    error = None
    try:
        done = await asyncio.wait_for(handler(svc, job["mall_id"], sub_mchid, key), JOB_TIMEOUT_S)
    except (ChannelError, ApiError, asyncio.TimeoutError, OSError) as exc:
        done, error = False, f"{type(exc).__name__}:{getattr(exc, 'code', '')}"
    now = svc.clock()
    async with svc.pool.acquire() as conn:
        if done:
            await jobs_repo.finish(conn, job["mall_id"], job["job_id"], now)
            return
        dead = job["attempts"] >= svc.settings.job_attempts_max
        delay_s = svc.settings.job_retry_base_s * 2 ** min(job["attempts"] - 1, BACKOFF_EXPONENT_MAX)
        await jobs_repo.retry(conn, job["mall_id"], job["job_id"], now + timedelta(seconds=delay_s),
                              (error or "not_finished")[:ERROR_CHARS_MAX], dead)
    if dead:
        log.error("job_dead", kind=job["kind"], ref=job["ref"], error=error)


async def guide_reward(svc: Services, mall_id: str, sub_mchid: str, out_trade_no: str) -> bool:
    """Split the guide's reward, less what the guide owes this store from refunds."""
    async with svc.pool.acquire() as conn:
        order = await orders_repo.order(conn, mall_id, sub_mchid, out_trade_no)
        tenant = await tenants_repo.tenant(conn, mall_id, sub_mchid)
        guide = await guides_repo.guide(conn, mall_id, order["mall_info"].get("guide_id", ""))
    if guide is None or guide["sub_mchid"] != sub_mchid:
        log.warning("guide_reward_skipped", reason="guide_not_of_this_store", out_trade_no=out_trade_no)
        return True
    out_order_no = f"GR{order['transaction_id']}"
    async with svc.pool.acquire() as conn:
        split = await repo.split_order(conn, mall_id, sub_mchid, out_order_no)
    if split is None:
        reward = share_fen(order["total_fen"], tenant.guide_reward_bps)
        split = await _prepare_reward(svc, order, guide, out_order_no, reward)
        if split is None:
            return True
    if split["state"] == "PREPARED":
        split = await splits.submit(svc, split)
    return split["state"] != "PREPARED"


async def _prepare_reward(svc: Services, order, guide, out_order_no: str, reward: int):
    key = (order["mall_id"], order["sub_mchid"], order["out_trade_no"])
    async with svc.pool.acquire() as conn, conn.transaction():
        owed = -(await ledger_repo.balance_fen(conn, order["mall_id"], accounts.guide_clawback(guide["guide_id"])))
        recovered = min(owed, reward)
        if recovered:
            # Kept by the store against the guide's debt; it stays in the store's frozen funds.
            await ledger_repo.post_transfer(conn, order["mall_id"], postings.recovery_transfer(
                order["sub_mchid"], out_order_no, guide["guide_id"], recovered), svc.clock())
        if reward - recovered <= 0:
            return None
        parts = [{"type": "PERSONAL_OPENID", "account": guide["openid"], "amount": reward - recovered,
                  "description": "导购奖励", "ledger_account": accounts.guide_rewards(guide["guide_id"]),
                  "returnable": False}]
        return await splits.prepare(
            svc, conn, key=key, transaction_id=order["transaction_id"], out_order_no=out_order_no,
            kind="split", purpose="guide_reward", parts=parts,
            request_hash=splits.parts_hash(parts), client_id=order["client_id"])


async def finish_order(svc: Services, mall_id: str, sub_mchid: str, out_trade_no: str) -> bool:
    """Before the channel's auto-unfreeze: commission by contract, then the rest to the store."""
    key = (mall_id, sub_mchid, out_trade_no)
    async with svc.pool.acquire() as conn:
        row = await conn.fetchrow(repo.FUNDS_BY_KEY, *key)
        tenant = await tenants_repo.tenant(conn, mall_id, sub_mchid)
        earlier = await repo.split_orders_of_trade(conn, *key)
    funds = repo.funds_from_row(row)
    if funds.unfrozen or (funds.frozen_fen == 0 and not funds.reserved_fen):
        return True  # released already, or refunds took everything that was frozen
    if funds.reserved_fen or any(s["state"] in ("PREPARED", "PROCESSING") for s in earlier):
        for split in earlier:
            if split["state"] in ("PREPARED", "PROCESSING"):
                await splits.sync(svc, mall_id, sub_mchid, split["out_order_no"])
        return False
    guide_id = await _pending_guide_reward(svc, key, earlier)
    if guide_id is not None:
        # A short freeze can bring the deadline before the reward's first try: pay it first.
        await guide_reward(svc, mall_id, sub_mchid, out_trade_no)
        return False
    if any(s["purpose"] in ("commission", "finish") and s["state"] == "FAILED" for s in earlier):
        if await _released_by_channel(svc, key, row):
            return True
    commission_done = any(s["purpose"] == "commission" and s["state"] != "FAILED" for s in earlier)
    # Commission on what the shopper kept: a refund before the deadline takes its part.
    kept_fen = funds.paid_fen - funds.refunded_fen
    commission = min(share_fen(kept_fen, tenant.commission_bps), funds.splittable_fen)
    if tenant.auto_split and commission > 0 and not commission_done:
        await ensure_mall_receiver(svc, mall_id, sub_mchid)
        parts = [{"type": "MERCHANT_ID", "account": svc.settings.sp_mchid, "amount": commission,
                  "description": "商场佣金", "ledger_account": accounts.MALL_COMMISSION, "returnable": True}]
        out_order_no, kind, purpose, extra = f"CM{row['transaction_id']}", "split", "commission", True
    else:
        parts, out_order_no, kind, purpose, extra = [], f"UF{row['transaction_id']}", "unfreeze", "finish", False
    async with svc.pool.acquire() as conn, conn.transaction():
        split = await splits.prepare(
            svc, conn, key=key, transaction_id=row["transaction_id"], out_order_no=out_order_no, kind=kind,
            purpose=purpose, parts=parts, request_hash=splits.parts_hash(parts, kind), client_id=None,
            unfreeze_unsplit=extra)
    await splits.submit(svc, split)
    return False  # done once a later pass sees the order unfrozen


async def _released_by_channel(svc: Services, key, row) -> bool:
    """The channel auto-unfreezes an order nobody finished in time (the gateway was down
    past the deadline): when it says nothing is left, the books release it too."""
    if await svc.channel.unsplit_amount(row["transaction_id"]) != 0:
        return False
    async with svc.pool.acquire() as conn, conn.transaction():
        _, funds = await repo.funds_for_update(conn, key)
        if funds.unfrozen or funds.reserved_fen:
            return funds.unfrozen
        amount, funds = order_funds.unfreeze(funds) if funds.frozen_fen else (0, replace(funds, unfrozen=True))
        if amount:
            await ledger_repo.post_transfer(conn, key[0], postings.unfreeze_transfer(
                key[1], f"AUTO{row['transaction_id']}", amount), svc.clock())
        await repo.save_funds(conn, key, funds)
    log.warning("order_released_by_channel", out_trade_no=key[2], amount_fen=amount)
    return True


async def _pending_guide_reward(svc: Services, key, earlier) -> str | None:
    async with svc.pool.acquire() as conn:
        order = await orders_repo.order(conn, *key)
    guide_id = order["mall_info"].get("guide_id")
    if guide_id is None or any(s["purpose"] == "guide_reward" for s in earlier):
        return None
    async with svc.pool.acquire() as conn:
        guide = await guides_repo.guide(conn, key[0], guide_id)
        done = await conn.fetchval(jobs_repo.JOB_DONE, key[0], "guide_reward", f"{key[1]}/{key[2]}")
    if guide is None or guide["sub_mchid"] != key[1] or done:
        return None
    return guide_id


async def sync_split(svc: Services, mall_id: str, sub_mchid: str, out_order_no: str) -> bool:
    return await splits.sync(svc, mall_id, sub_mchid, out_order_no)


async def refund_step(svc: Services, mall_id: str, sub_mchid: str, out_refund_no: str) -> bool:
    return await refunds.drive(svc, mall_id, sub_mchid, out_refund_no)


HANDLERS = {
    "guide_reward": guide_reward,
    "finish_order": finish_order,
    splits.SYNC_SPLIT: sync_split,
    refunds.REFUND_STEP: refund_step,
    reconciliation.RECONCILE_DAY: reconciliation.run_job,
}
