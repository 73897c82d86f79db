"""Split orders and unfreezes: reserved under the order's lock, sent to the channel, and
posted to the ledger when the channel reports the result (SPEC 5).

Every split of an order, whoever asks for it (the mall backend through the API, the
guide's instant reward, the commission at the deadline), goes through `prepare` and
`submit`, so the cap and the frozen amount are checked in one place.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

import structlog

from gateway.channel import (
    ChannelError, ChannelReceiverType, ChannelSplitOrder, ChannelSplitReceiver, ChannelSplitRequest,
    ChannelSplitResult, ChannelSplitState, SplitNotReady,
)
from gateway.domain_errors import ChannelRefused, KeyReused, NotFound
from gateway.repo import jobs as jobs_repo
from gateway.repo import outbox as outbox_repo
from splitting import repo
from gateway.services import channel_caps
from gateway.services.context import Services
from gateway.shapes.profitsharing import closed_json, split_json, split_notice
from gateway.wire import canonical_json
from ledger import repo as ledger_repo
from splitting import funds as order_funds
from splitting import postings
from splitting.rules import DEFAULT_MAX_RATIO_BPS, cap_fen

log = structlog.get_logger(__name__)
SYNC_SPLIT = "sync_split"
ORDER_ID_DIGITS = 28  # as long as WeChat's


def parts_hash(*values) -> str:
    return hashlib.sha256(canonical_json(list(values)).encode()).hexdigest()


async def paid_trade(svc: Services, mall_id: str, sub_mchid: str, transaction_id: str):
    """The paid order a split names by its transaction_id, with its funds."""
    async with svc.pool.acquire() as conn:
        row = await repo.funds_by_transaction(conn, mall_id, sub_mchid, transaction_id)
    if row is None:
        raise NotFound("order", "order_not_paid", "no paid order of this store with this transaction_id")
    return row


async def prepare(svc: Services, conn, *, key, transaction_id: str, out_order_no: str, kind: str,
                  purpose: str, parts: list[dict], request_hash: str, client_id: str | None,
                  unfreeze_unsplit: bool = False):
    """Inside the caller's transaction: lock the order's funds, apply the rules, write the
    split order. Returns the split order row (an existing one for a repeated request)."""
    mall_id, sub_mchid, out_trade_no = key
    # The order's lock first: a concurrent duplicate waits here and then finds the split.
    row, funds = await repo.funds_for_update(conn, key)
    if row is None:
        raise NotFound("order", "order_not_paid", "no paid order with this transaction_id")
    existing = await repo.split_order(conn, mall_id, sub_mchid, out_order_no)
    if existing is not None:
        if existing["request_hash"] != request_hash:
            raise KeyReused("out_order_no")
        return existing
    # The channel would refuse more than its own cap: enforce the lower one.
    funds = order_funds.capped(funds, await channel_caps.known(conn, mall_id, sub_mchid))
    if kind == "unfreeze":
        amount, funds = order_funds.unfreeze(funds)
        parts = [{"type": "MERCHANT_ID", "account": sub_mchid, "amount": amount,
                  "description": "解冻给分账方", "ledger_account": None}]
    else:
        funds = order_funds.reserve_split(
            funds, [(p["ledger_account"], p["returnable"], p["amount"]) for p in parts],
            purpose if purpose in order_funds.SET_ASIDE_FIELD else order_funds.API)
    await repo.save_funds(conn, key, funds)
    created = await repo.insert_split_order(
        conn, mall_id=mall_id, sub_mchid=sub_mchid, out_order_no=out_order_no, out_trade_no=out_trade_no,
        transaction_id=transaction_id, kind=kind, purpose=purpose, request_hash=request_hash, parts=parts,
        # A split beyond WeChat's default cap uses the store's high-ratio approval: record which.
        approval_id=row["approval_id"] if funds.uses_approval else None,
        client_id=client_id, created_at=svc.clock(), unfreeze_unsplit=unfreeze_unsplit, order_id=new_order_id(),
    )
    assert created is not None, "split order inserted under the funds lock"
    return created


async def give_up(svc: Services, conn, funds, *, key, transaction_id: str, out_order_no: str, purpose: str,
                  parts: list[dict], reason: str) -> None:
    """Inside the caller's transaction, the order's funds locked: the gateway will not make
    its own split for `purpose`. Its room in the cap is freed and the split order is kept
    as FAILED with the reason, so the API answers it like a split the channel refused."""
    mall_id, sub_mchid, out_trade_no = key
    now, order_id = svc.clock(), new_order_id()
    await repo.save_funds(conn, key, order_funds.give_up(funds, purpose))
    record = {"sub_mchid": sub_mchid, "transaction_id": transaction_id, "out_order_no": out_order_no,
              "order_id": order_id, "parts": parts, "approval_id": None, "created_at": now}
    await repo.insert_given_up_split(
        conn, mall_id=mall_id, sub_mchid=sub_mchid, out_order_no=out_order_no, out_trade_no=out_trade_no,
        transaction_id=transaction_id, purpose=purpose, parts=parts, result=closed_json(record, reason, now),
        client_id=None, now=now, order_id=order_id)
    log.warning("split_given_up", purpose=purpose, out_order_no=out_order_no, reason=reason)


async def submit(svc: Services, split) -> object:
    """Send a prepared split (or unfreeze) to the channel. Returns the fresh row.

    While the channel says it is too early (WeChat refuses splits for about a minute after
    payment) or cannot be reached, the split stays PREPARED and the scheduler retries it:
    nobody has to ask again.
    """
    key = (split["mall_id"], split["sub_mchid"], split["out_order_no"])
    try:
        if split["kind"] == "unfreeze":
            answer = await svc.channel.unfreeze(split["sub_mchid"], split["transaction_id"],
                                                split["out_order_no"], "解冻剩余资金")
        else:
            answer = await svc.channel.request_split(_channel_request(svc, split))
    except ChannelError as exc:
        if exc.retryable or isinstance(exc, SplitNotReady):
            log.info("split_deferred", out_order_no=split["out_order_no"], code=exc.code)
            await _schedule_sync(svc, key, svc.settings.split_retry_s)
            return await _reload(svc, key)
        await fail(svc, split, exc.code)
        raise ChannelRefused("split", exc.code) from None
    return await record_answer(svc, split, answer)


async def record_answer(svc: Services, split, answer: ChannelSplitOrder):
    key = (split["mall_id"], split["sub_mchid"], split["out_order_no"])
    if answer.state is ChannelSplitState.FINISHED:
        return await apply_result(svc, split, answer)
    async with svc.pool.acquire() as conn:
        row = await repo.mark_split_order(conn, key, "PROCESSING", order_id=answer.order_id,
                                          result=split_json(split, answer))
    await _schedule_sync(svc, key, 1)
    return row or await _reload(svc, key)


async def apply_result(svc: Services, split, answer: ChannelSplitOrder):
    """The channel finished a split: record each part's result, post what moved, tell the client."""
    key = (split["mall_id"], split["sub_mchid"], split["out_order_no"])
    trade_key = (split["mall_id"], split["sub_mchid"], split["out_trade_no"])
    now = svc.clock()
    async with svc.pool.acquire() as conn, conn.transaction():
        _, funds = await repo.funds_for_update(conn, trade_key)
        current = await repo.split_order(conn, *key)
        if current["state"] in ("FINISHED", "FAILED"):
            return current
        moved: list[tuple[str, int]] = []
        if split["kind"] == "unfreeze":
            amount = split["parts"][0]["amount"]
            if amount:
                await ledger_repo.post_transfer(conn, split["mall_id"], postings.unfreeze_transfer(
                    split["sub_mchid"], split["out_order_no"], amount), now)
        else:
            for part in split["parts"]:
                ok = _succeeded(answer, part)
                funds = order_funds.record_split_result(funds, part["ledger_account"], part["amount"], succeeded=ok)
                if ok:
                    moved.append((part["ledger_account"], part["amount"]))
            if moved:
                await ledger_repo.post_transfer(conn, split["mall_id"], postings.split_transfer(
                    split["sub_mchid"], split["out_order_no"], moved), now)
            if split["unfreeze_unsplit"] and not funds.unfrozen and not funds.reserved_fen:
                # The channel released the rest to the store once this split was done.
                amount, funds = order_funds.release_rest(funds)
                if amount:
                    await ledger_repo.post_transfer(conn, split["mall_id"], postings.unfreeze_transfer(
                        split["sub_mchid"], split["out_order_no"], amount), now)
            await repo.save_funds(conn, trade_key, funds)
        row = await repo.mark_split_order(conn, key, "FINISHED", order_id=answer.order_id,
                                          result=split_json(split, answer), finished_at=now)
        if split["client_id"] and split["kind"] == "split":
            await _notify_client(conn, svc, row, [(p, _fail_reason(answer, p)) for p in split["parts"]])
    return row


async def fail(svc: Services, split, reason: str) -> None:
    """The channel refused the whole split: release the reservation, keep the record."""
    key = (split["mall_id"], split["sub_mchid"], split["out_order_no"])
    trade_key = (split["mall_id"], split["sub_mchid"], split["out_trade_no"])
    async with svc.pool.acquire() as conn, conn.transaction():
        _, funds = await repo.funds_for_update(conn, trade_key)
        current = await repo.split_order(conn, *key)
        if current["state"] not in ("PREPARED", "PROCESSING"):
            return
        if split["kind"] == "unfreeze":
            funds = order_funds.undo_unfreeze(funds, split["parts"][0]["amount"])
        else:
            for part in split["parts"]:
                funds = order_funds.record_split_result(funds, part["ledger_account"], part["amount"], succeeded=False)
        await repo.save_funds(conn, trade_key, funds)
        now = svc.clock()
        row = await repo.mark_split_order(conn, key, "FAILED", result=closed_json(current, reason, now),
                                          finished_at=now)
        if row is not None and split["client_id"] and split["kind"] == "split":
            await _notify_client(conn, svc, row, [(p, reason) for p in split["parts"]])
    log.warning("split_failed", out_order_no=split["out_order_no"], reason=reason)


async def sync(svc: Services, mall_id: str, sub_mchid: str, out_order_no: str) -> bool:
    """Ask the channel about a split in flight; True once it has finished either way."""
    async with svc.pool.acquire() as conn:
        split = await repo.split_order(conn, mall_id, sub_mchid, out_order_no)
    if split is None or split["state"] in ("FINISHED", "FAILED"):
        return True
    if split["state"] == "PREPARED":
        try:
            await submit(svc, split)
        except ChannelRefused:
            pass  # refused for good: recorded as FAILED
        return await _finished(svc, split)
    answer = await svc.channel.query_split(sub_mchid, split["transaction_id"], out_order_no)
    if answer is not None and answer.state is ChannelSplitState.FINISHED:
        await apply_result(svc, split, answer)
        return True
    return False


async def brought_up_to_date(svc: Services, split):
    """The split order row, asking the channel first while it is in flight."""
    if split["state"] not in ("PREPARED", "PROCESSING"):
        return split
    key = (split["mall_id"], split["sub_mchid"], split["out_order_no"])
    await sync(svc, *key)
    return await _reload(svc, key)


async def _finished(svc, split) -> bool:
    row = await _reload(svc, (split["mall_id"], split["sub_mchid"], split["out_order_no"]))
    return row["state"] in ("FINISHED", "FAILED")


def new_order_id() -> str:
    """The split order's number as the gateway answers it, made when the split is
    accepted (the channel's own comes later, or never for a split it refuses)."""
    return "30" + "".join(str(secrets.randbelow(10)) for _ in range(ORDER_ID_DIGITS - 2))


def _fail_reason(answer: ChannelSplitOrder, part: dict) -> str | None:
    """None when the channel paid this receiver, else why not."""
    for detail in answer.receivers:
        if detail.account == part["account"] and detail.type.value == part["type"]:
            if detail.result is ChannelSplitResult.SUCCESS:
                return None
            return detail.fail_reason or detail.result.value
    return "NOT_IN_ANSWER"


def _succeeded(answer: ChannelSplitOrder, part: dict) -> bool:
    for detail in answer.receivers:
        if detail.account == part["account"] and detail.type.value == part["type"]:
            return detail.result is ChannelSplitResult.SUCCESS
    return False


def _channel_request(svc: Services, split) -> ChannelSplitRequest:
    receivers = tuple(ChannelSplitReceiver(type=ChannelReceiverType(p["type"]), account=p["account"],
                                           amount_fen=p["amount"], description=p["description"])
                      for p in split["parts"])
    return ChannelSplitRequest(
        sub_mchid=split["sub_mchid"], appid=svc.settings.sp_appid, sub_appid=None,
        transaction_id=split["transaction_id"], out_order_no=split["out_order_no"],
        receivers=receivers, unfreeze_unsplit=split["unfreeze_unsplit"],
    )


async def _notify_client(conn, svc: Services, split, outcomes: list[tuple[dict, str | None]]) -> None:
    """One notification per receiver, as WeChat sends them (`split_notice`)."""
    now = svc.clock()
    for part, fail_reason in outcomes:
        await outbox_repo.insert_order_event(
            conn, order_key=(split["mall_id"], split["sub_mchid"], split["out_trade_no"]),
            notification_id=uuid.uuid4(),
            ref=f"{split['sub_mchid']}/{split['out_order_no']}/{part['type']}/{part['account']}",
            now=now, **split_notice(split, part, fail_reason, now).columns())


async def _schedule_sync(svc: Services, key, after_s: int) -> None:
    mall_id, sub_mchid, out_order_no = key
    now = svc.clock()
    async with svc.pool.acquire() as conn:
        await jobs_repo.ensure_job(conn, mall_id, SYNC_SPLIT, f"{sub_mchid}/{out_order_no}",
                                   now + timedelta(seconds=after_s), now)


async def _reload(svc: Services, key):
    async with svc.pool.acquire() as conn:
        return await repo.split_order(conn, *key)
