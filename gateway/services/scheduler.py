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
from datetime import timedelta

import structlog

from gateway.channel import ChannelError
from gateway.domain_errors import DomainError
from gateway.repo import jobs as jobs_repo
from gateway.repo import orders as orders_repo
from splitting import repo
from gateway.repo import tenants as tenants_repo
from gateway.repo import guides as guides_repo
from gateway.services import reconciliation, refunds, splits
from gateway.services.context import Services
from gateway.services.receivers import ensure_mall_receiver
from ledger import accounts
from ledger import repo as ledger_repo
from splitting import funds as order_funds
from splitting import own_splits, postings
from splitting.rules import SplitRefused

log = structlog.get_logger(__name__)
JOB_TIMEOUT_S = 30
# A day's reconciliation reads and matches a busy mall's whole day (100,000 orders take
# seconds, more on a loaded host); its lease is extended to match before it starts.
JOB_TIMEOUT_S_BY_KIND = {"reconcile_day": 600}
BACKOFF_EXPONENT_MAX = 6
ERROR_CHARS_MAX = 200


async def run_due_jobs(svc: Services) -> int:
    """One pass: claim up to `jobs_batch_max` due jobs and run each once."""
    settings = svc.settings
    now = svc.clock()
    async with svc.pool.acquire() as conn:
        jobs = await jobs_repo.claim_due(conn, settings.sp_mchid, now, now + timedelta(seconds=JOB_TIMEOUT_S * 2),
                                         settings.jobs_batch_max)
    for job in jobs:
        await _run(svc, job)
    return len(jobs)


async def _run(svc: Services, job) -> None:
    handler = HANDLERS[job["kind"]]
    sub_mchid, _, key = job["ref"].partition("/")
    error = None
    timeout_s = JOB_TIMEOUT_S_BY_KIND.get(job["kind"], JOB_TIMEOUT_S)
    if timeout_s > JOB_TIMEOUT_S:
        async with svc.pool.acquire() as conn:
            await jobs_repo.extend_lease(conn, job["mall_id"], job["job_id"],
                                         svc.clock() + timedelta(seconds=timeout_s * 2))
    try:
        done = await asyncio.wait_for(handler(svc, job["mall_id"], sub_mchid, key), timeout_s)
    except (ChannelError, DomainError, SplitRefused, asyncio.TimeoutError, OSError) as exc:
        done, error = False, f"{type(exc).__name__}:{getattr(exc, 'code', None) or getattr(exc, 'reason', '')}"
    except Exception as exc:  # noqa: BLE001 — a defect or a database error in one job
        # must not end the pass for the jobs claimed after it, and is retried with backoff
        # like any failure, ending dead (seen by operators) instead of looping unseen.
        log.exception("job_failed", kind=job["kind"], ref=job["ref"])
        done, error = False, f"{type(exc).__name__}:{exc}"
    now = svc.clock()
    async with svc.pool.acquire() as conn:
        if done:
            await jobs_repo.finish(conn, job["mall_id"], job["job_id"], now)
            return
        # A finish never gives up: an order left frozen in the books past the channel's own
        # deadline would disagree with the channel. Its backoff is capped, and past that
        # deadline it ends as soon as the channel says it released the order.
        dead = job["attempts"] >= svc.settings.job_attempts_max and job["kind"] != "finish_order"
        delay_s = svc.settings.job_retry_base_s * 2 ** min(job["attempts"] - 1, BACKOFF_EXPONENT_MAX)
        await jobs_repo.retry(conn, job["mall_id"], job["job_id"], now + timedelta(seconds=delay_s),
                              (error or "not_finished")[:ERROR_CHARS_MAX], dead)
    if dead:
        log.error("job_dead", kind=job["kind"], ref=job["ref"], error=error)


async def guide_reward(svc: Services, mall_id: str, sub_mchid: str, out_trade_no: str) -> bool:
    """Split the guide's reward (the room set aside for it at payment), less what the guide
    owes this store from refunds; or give it up with the reason when it cannot be made."""
    async with svc.pool.acquire() as conn:
        order = await orders_repo.order(conn, mall_id, sub_mchid, out_trade_no)
        guide = await guides_repo.guide(conn, mall_id, order["mall_info"].get("guide_id", ""))
        split = await repo.split_order(conn, mall_id, sub_mchid, f"GR{order['transaction_id']}")
    if split is None:
        split = await _prepare_reward(svc, order, guide, f"GR{order['transaction_id']}")
        if split is None:
            return True
    if split["state"] == "PREPARED":
        split = await splits.submit(svc, split)
    return split["state"] != "PREPARED"


async def _prepare_reward(svc: Services, order, guide, out_order_no: str):
    key = (order["mall_id"], order["sub_mchid"], order["out_trade_no"])
    async with svc.pool.acquire() as conn, conn.transaction():
        _, funds = await repo.funds_for_update(conn, key)
        existing = await repo.split_order(conn, *key[:2], out_order_no)
        reward = funds.reward_set_aside_fen
        if existing is not None or reward == 0:
            return existing  # made or given up already, or nothing was set aside
        if guide is None or guide["sub_mchid"] != order["sub_mchid"]:
            await splits.give_up(svc, conn, funds, key=key, transaction_id=order["transaction_id"],
                                 out_order_no=out_order_no, purpose=order_funds.GUIDE_REWARD, parts=[],
                                 reason="guide_not_of_this_store")
            return None
        # Under the guide's lock until this transaction commits the recovery: another reward
        # job of this guide waits here, then reads the debt this one left.
        await guides_repo.lock_guide(conn, order["mall_id"], guide["guide_id"])
        owed = -(await ledger_repo.balance_fen(conn, order["mall_id"], accounts.guide_clawback(guide["guide_id"])))
        rewards_account = accounts.guide_rewards(guide["guide_id"])
        decided = own_splits.guide_reward(funds, rewards_account, owed)
        parts = [{"type": "PERSONAL_OPENID", "account": guide["openid"], "amount": decided.paid_fen,
                  "description": "导购奖励", "ledger_account": rewards_account, "returnable": False}]
        if decided.refusal is not None:
            # The mall released the order, or refunds took its frozen money, first.
            await splits.give_up(svc, conn, funds, key=key, transaction_id=order["transaction_id"],
                                 out_order_no=out_order_no, purpose=order_funds.GUIDE_REWARD,
                                 parts=[{**parts[0], "amount": reward}], reason=decided.refusal)
            return None
        if decided.recovered_fen:
            # Kept by the store against the guide's debt; it stays in the store's frozen funds.
            await ledger_repo.post_transfer(conn, order["mall_id"], postings.recovery_transfer(
                order["sub_mchid"], out_order_no, guide["guide_id"], decided.recovered_fen), svc.clock())
        if decided.paid_fen <= 0:
            await repo.save_funds(conn, key, order_funds.give_up(funds, order_funds.GUIDE_REWARD))
            return None
        return await splits.prepare(
            svc, conn, key=key, transaction_id=order["transaction_id"], out_order_no=out_order_no,
            kind="split", purpose="guide_reward", parts=parts,
            request_hash=splits.parts_hash(parts), client_id=order["client_id"])


async def finish_order(svc: Services, mall_id: str, sub_mchid: str, out_trade_no: str) -> bool:
    """Before the channel's auto-unfreeze: the guide's reward if still due, the commission
    by contract, then the rest to the store. Whatever of the gateway's own splits fails or
    is given up, the order is still released: the unfreeze is the last resort, and past
    the channel's own deadline the books follow what the channel did."""
    key = (mall_id, sub_mchid, out_trade_no)
    async with svc.pool.acquire() as conn:
        row = await conn.fetchrow(repo.FUNDS_BY_KEY, *key)
        tenant = await tenants_repo.tenant(conn, mall_id, sub_mchid)
        earlier = {s["out_order_no"]: s for s in await repo.split_orders_of_trade(conn, *key)}
    funds = repo.funds_from_row(row)
    if funds.unfrozen or (funds.frozen_fen == 0 and not funds.reserved_fen):
        return True  # released already, or refunds took everything that was frozen
    in_flight = [s for s in earlier.values() if s["state"] in ("PREPARED", "PROCESSING")]
    if funds.reserved_fen or in_flight:
        for split in in_flight:
            await splits.sync(svc, mall_id, sub_mchid, split["out_order_no"])
        return False
    transaction_id = row["transaction_id"]
    channel_deadline = row["finish_by"] + timedelta(seconds=svc.settings.finish_before_unfreeze_s)
    if svc.clock() >= channel_deadline and await _released_by_channel(svc, key, row):
        return True
    if f"UF{transaction_id}" in earlier:  # the channel refused even the release: ask it again later
        return await _released_by_channel(svc, key, row)
    if funds.reward_set_aside_fen and f"GR{transaction_id}" not in earlier:
        # The reward's own job may be dead or not yet due: make or give it up first.
        await guide_reward(svc, mall_id, sub_mchid, out_trade_no)
        return False
    split = None
    if tenant.contract.auto_split and f"CM{transaction_id}" not in earlier:
        split = await _prepare_commission(svc, key, row, tenant)
    if split is None:
        split = await _prepare_release(svc, key, row)
    await splits.submit(svc, split)
    return False  # done once a later pass sees the order unfrozen


async def _prepare_commission(svc: Services, key, row, tenant):
    """The commission on what the shopper kept (a refund before the deadline takes its
    part), within the room kept for it and the money still frozen; None when none is due.
    A commission due that cannot be made at all is given up with the reason."""
    out_order_no = f"CM{row['transaction_id']}"
    async with svc.pool.acquire() as conn, conn.transaction():
        _, funds = await repo.funds_for_update(conn, key)
        decided = own_splits.commission(funds, tenant.contract.commission_bps, accounts.MALL_COMMISSION)
        parts = [{"type": "MERCHANT_ID", "account": svc.settings.sp_mchid, "amount": decided.amount_fen,
                  "description": "商场佣金", "ledger_account": accounts.MALL_COMMISSION, "returnable": True}]
        if decided.due_fen <= 0:
            await repo.save_funds(conn, key, order_funds.give_up(funds, order_funds.COMMISSION))
            return None
        if decided.refusal is not None:
            await splits.give_up(svc, conn, funds, key=key, transaction_id=row["transaction_id"],
                                 out_order_no=out_order_no, purpose=order_funds.COMMISSION,
                                 parts=[{**parts[0], "amount": decided.due_fen}], reason=decided.refusal)
            return None
    await ensure_mall_receiver(svc, key[0], key[1])
    async with svc.pool.acquire() as conn, conn.transaction():
        return await splits.prepare(
            svc, conn, key=key, transaction_id=row["transaction_id"], out_order_no=out_order_no, kind="split",
            purpose="commission", parts=parts, request_hash=splits.parts_hash(parts, "split"), client_id=None,
            unfreeze_unsplit=True)


async def _prepare_release(svc: Services, key, row):
    async with svc.pool.acquire() as conn, conn.transaction():
        return await splits.prepare(
            svc, conn, key=key, transaction_id=row["transaction_id"], out_order_no=f"UF{row['transaction_id']}",
            kind="unfreeze", purpose="finish", parts=[], request_hash=splits.parts_hash([], "unfreeze"),
            client_id=None)


async def _released_by_channel(svc: Services, key, row) -> bool:
    """The channel auto-unfreezes an order nobody finished in time (the gateway was down
    past the deadline): when it says nothing is left, the books release it too."""
    if await svc.channel.unsplit_amount(row["transaction_id"]) != 0:
        return False
    async with svc.pool.acquire() as conn, conn.transaction():
        _, funds = await repo.funds_for_update(conn, key)
        if funds.unfrozen or funds.reserved_fen:
            return funds.unfrozen
        amount, funds = order_funds.release_rest(funds)
        if amount:
            await ledger_repo.post_transfer(conn, key[0], postings.unfreeze_transfer(
                key[1], f"AUTO{row['transaction_id']}", amount), svc.clock())
        await repo.save_funds(conn, key, funds)
    log.warning("order_released_by_channel", out_trade_no=key[2], amount_fen=amount)
    return True


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
