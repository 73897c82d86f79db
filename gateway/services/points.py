"""Mall points: what a payment earns and a refund takes back, in the ledger (PTS), and
each change told to WeChat's business-circle points API exactly once.

Earning joins the payment's transaction as data (a transfer and rows, STYLE habit 9);
reversal joins the refund's. A sync row is written with each change and delivered by
`sync_due`: claimed with a lease so one process sends it, retried with backoff until
WeChat answers 204, `dead` after `points_sync_attempts_max`.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import structlog

from gateway.channel import ChannelError, ChannelPointsNotice
from gateway.services.context import Services
from ledger import repo as ledger_repo
from points import repo as points_repo
from points.rules import (
    POINTS_EARN, POINTS_REVERSE, earn_transfer, member_account, points_accounts, points_earned,
    points_to_reverse, reverse_transfer,
)

log = structlog.get_logger(__name__)
NO_POINTS_REMARK = "不足1元或门店不积分"  # WeChat asks why when nothing is earned (≤ 20 chars)
REVERSED_REMARK = "退款扣回积分"
SYNC_LEASE_S = 30
OUTBOX_TABLE = "outbox"
ERROR_CHARS_MAX = 200


def payer_of(order) -> tuple[str, str]:
    """(openid, appid) the shopper paid with."""
    if order["payer_sp_openid"]:
        return order["payer_sp_openid"], order["sp_appid"]
    return order["payer_sub_openid"], order["sub_appid"]


async def rate_for(svc: Services, conn, order) -> int:
    """The store's points per yuan: read with the order to pay (`orders_repo.ORDER_TO_PAY`,
    column `store_points_per_yuan`), else asked for here."""
    if "store_points_per_yuan" in order.keys():
        rate = order["store_points_per_yuan"]
    else:
        rate = await points_repo.rule(conn, order["mall_id"], order["sub_mchid"])
    return svc.settings.points_per_yuan_default if rate is None else rate


def join_payment(order, rate: int, effects, transaction_id: str, paid_at: datetime):
    """The payment's effects with its points: the member's accounts, the earn transfer, the
    order's points and the sync row to WeChat (rows the payment's one transaction writes)."""
    mall_id = order["mall_id"]
    openid, appid = payer_of(order)
    earned = points_earned(order["total_fen"], rate)
    ref = f"{order['sub_mchid']}/{order['out_trade_no']}"
    for spec in points_accounts(mall_id, openid):  # made on first use, before the transfers (accounts_insert_row)
        effects = effects.with_row(ledger_repo.ACCOUNTS_TABLE, ledger_repo.account_row(mall_id, spec))
    if earned:
        effects = effects.with_transfer(earn_transfer(mall_id, openid, ref, earned))
    effects = effects.with_row("points_orders", {
        "mall_id": mall_id, "sub_mchid": order["sub_mchid"], "out_trade_no": order["out_trade_no"],
        "openid": openid, "points_per_yuan": rate, "paid_fen": order["total_fen"], "earned_points": earned})
    effects = _told_in_notification(effects, earned)
    return effects.with_row("points_syncs", _sync_row(mall_id, POINTS_EARN, ref, order["sub_mchid"], transaction_id,
                                                      appid, openid, earned, paid_at))


def _told_in_notification(effects, earned: int):
    """The TRANSACTION.SUCCESS resource carries the points the payment earned
    (`mall_info.points.earned`)."""
    rows = []
    for table, row in effects.rows:
        if table == OUTBOX_TABLE and row.get("event_type") == "TRANSACTION.SUCCESS":
            resource = {**row["resource"], "mall_info": {**row["resource"].get("mall_info", {}),
                                                         "points": {"earned": earned}}}
            row = {**row, "resource": resource}
        rows.append((table, row))
    return dataclasses.replace(effects, rows=tuple(rows))


async def reverse_for_refund(svc: Services, conn, refund, now: datetime) -> int:
    """Inside the refund's transaction: take back what the refunds so far un-earn."""
    mall_id, sub_mchid = refund["mall_id"], refund["sub_mchid"]
    earned = await points_repo.order_points_for_update(conn, mall_id, sub_mchid, refund["out_trade_no"])
    if earned is None or earned["earned_points"] == 0:
        return 0
    refunded_fen = await points_repo.refunded_of_order(conn, mall_id, sub_mchid, refund["out_trade_no"])
    due = points_to_reverse(paid_fen=earned["paid_fen"], refunded_fen=refunded_fen,
                            points_per_yuan=earned["points_per_yuan"], reversed_already=earned["reversed_points"])
    if due == 0:
        return 0
    ref = f"{sub_mchid}/{refund['out_refund_no']}"
    openid = earned["openid"]
    await ledger_repo.post_transfer(conn, mall_id, reverse_transfer(mall_id, openid, ref, due), now)
    await points_repo.add_reversed(conn, mall_id, sub_mchid, refund["out_trade_no"], due)
    appid = svc.settings.sp_appid
    await points_repo.insert_sync(conn, _sync_row(mall_id, POINTS_REVERSE, ref, sub_mchid,
                                                  refund["transaction_id"], appid, openid, -due, now))
    return due


def _sync_row(mall_id, kind, ref, sub_mchid, transaction_id, appid, openid, points: int, at: datetime) -> dict:
    return {"mall_id": mall_id, "kind": kind, "ref": ref, "sub_mchid": sub_mchid, "transaction_id": transaction_id,
            "appid": appid, "openid": openid, "earn_points": points > 0, "increased_points": points,
            "points_update_time": at.isoformat(),
            "no_points_remarks": None if points > 0 else (NO_POINTS_REMARK if points == 0 else REVERSED_REMARK),
            "account": member_account(mall_id, openid)}


async def sync_due(svc: Services) -> int:
    """One pass of the points sync: claim the mall's due rows (bounded), tell WeChat,
    record the pass's accepted syncs in one statement."""
    settings = svc.settings
    now = svc.clock()
    async with svc.pool.acquire() as conn:
        rows = await points_repo.claim_due_syncs(conn, settings.sp_mchid, now, now + timedelta(seconds=SYNC_LEASE_S),
                                                 settings.points_sync_batch_max)
    synced = []
    try:
        for row in rows:
            if await _sync_one(svc, row):
                synced.append((row["sync_id"], svc.clock()))
    finally:
        if synced:
            async with svc.pool.acquire() as conn:
                await points_repo.mark_synced(conn, settings.sp_mchid, synced)
    return len(rows)


async def _sync_one(svc: Services, row) -> bool:
    """True when WeChat accepted the change; a refusal is recorded here."""
    notice = ChannelPointsNotice(
        sub_mchid=row["sub_mchid"], transaction_id=row["transaction_id"], appid=row["appid"], openid=row["openid"],
        earn_points=row["earn_points"], increased_points=row["increased_points"],
        points_update_at=row["points_update_time"], no_points_remarks=row["no_points_remarks"],
        total_points=row["total_points"])
    try:
        await svc.channel.notify_points(notice)
    except ChannelError as exc:
        attempts = row["attempts"] + 1
        dead = attempts >= svc.settings.points_sync_attempts_max or not exc.retryable
        delay_s = svc.settings.points_sync_retry_base_s * 2 ** min(attempts - 1, 10)
        async with svc.pool.acquire() as conn:
            await points_repo.mark_sync_failed(conn, row["mall_id"], row["sync_id"], exc.code[:ERROR_CHARS_MAX],
                                               svc.clock() + timedelta(seconds=delay_s), dead)
        log.warning("points_sync_failed", code=exc.code, attempts=attempts, dead=dead)
        return False
    return True


SYNC_STATES = ("dead", "pending", "synced")


async def list_syncs(svc: Services, mall_id: str, state: str, limit: int, offset: int) -> dict:
    """Points changes in one state of SYNC_STATES (operators look at `dead` ones: WeChat
    never took them)."""
    assert state in SYNC_STATES, state
    async with svc.pool.acquire() as conn:
        rows, total = await points_repo.syncs(conn, mall_id, state, limit, offset)
    return {"total_count": total, "offset": offset, "limit": limit, "data": [sync_json(r) for r in rows]}


async def dead_sync_count(svc: Services, mall_id: str) -> int:
    async with svc.pool.acquire() as conn:
        return (await points_repo.sync_counts(conn, mall_id)).get("dead", 0)


async def retry_sync(svc: Services, mall_id: str, sync_id: int) -> tuple[dict | None, str | None]:
    """Start a dead sync over: due at once, attempts from zero (the worker sends it once).
    (the sync, None) when retried; (None, its state) when it is not dead; (None, None)
    when there is no such sync."""
    async with svc.pool.acquire() as conn:
        row = await points_repo.retry_dead_sync(conn, mall_id, sync_id, svc.clock())
        if row is None:
            return None, await points_repo.sync_state(conn, mall_id, sync_id)
    return sync_json(row), None


def sync_json(row) -> dict:
    return {"sync_id": str(row["sync_id"]), "kind": row["kind"], "ref": row["ref"], "sub_mchid": row["sub_mchid"],
            "transaction_id": row["transaction_id"], "increased_points": row["increased_points"],
            "total_points": row["total_points"], "points_update_time": row["points_update_time"].isoformat(),
            "state": row["state"], "attempts": row["attempts"], "last_error": row["last_error"],
            "next_attempt_at": row["next_attempt_at"].isoformat(),
            "synced_at": row["synced_at"].isoformat() if row["synced_at"] else None}
