"""Payouts: the channel paid a store's available balance to its bank (SPEC 6). The gateway
learns of each from the store's fund-flow bill and books it `tenant:S:available` ->
`tenant:S:settled`, exactly once per bill line: the transfer's (kind, ref) is unique, so a
bill read twice, or by two processes at once, books each line once (the second insert
waits for the first and then finds it there)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date, datetime

import asyncpg
import structlog

from gateway.caller import Caller
from gateway.channel.bills import ChannelPayoutLine
from gateway.repo import bills as bills_repo
from gateway.repo import tenants as tenants_repo
from gateway.services.context import Services
from gateway.wire import to_wechat_time
from ledger import repo as ledger_repo
from ledger.payouts import payout_transfer

log = structlog.get_logger(__name__)
STORES_PAGE = 500


@dataclass
class PayoutBooking:
    booked: int = 0
    already_booked: int = 0
    refused: list[ChannelPayoutLine] = field(default_factory=list)  # more than the store has in our books


async def store_payouts(svc: Services, caller: Caller, sub_mchid: str | None, from_at: datetime, to_at: datetime,
                        limit: int, offset: int) -> dict | None:
    """A page of payouts, of one store or (sub_mchid None) all; None when that store is not
    the caller's to see, exactly as for an unknown store."""
    async with svc.pool.acquire() as conn:
        if sub_mchid is not None:
            exists = await tenants_repo.tenant(conn, caller.mall_id, sub_mchid)
            if exists is None or not caller.sees_store(sub_mchid):
                return None
        rows = await bills_repo.store_payouts(conn, caller.mall_id, sub_mchid, from_at, to_at, limit, offset)
    data = [{"sub_mchid": r["ref"].split("/")[0], "payout_id": r["ref"].partition("/")[2],
             "amount": r["amount_fen"], "paid_at": to_wechat_time(r["created_at"])} for r in rows]
    return {"offset": offset, "limit": limit, "data": data}


async def stores(svc: Services, mall_id: str) -> list[str]:
    found: list[str] = []
    async with svc.pool.acquire() as conn:
        while True:
            page, total = await tenants_repo.tenants(conn, mall_id, STORES_PAGE, len(found))
            found += [tenant.sub_mchid for tenant in page]
            if not page or len(found) >= total:
                return found


async def payout_lines_of_day(svc: Services, mall_id: str, bill_on: date) -> list[ChannelPayoutLine]:
    """Every store's fund-flow bill of the day, a few downloads at a time."""
    gate = asyncio.Semaphore(svc.settings.reconcile_stores_concurrency)

    async def one(sub_mchid: str) -> list[ChannelPayoutLine]:
        async with gate:
            return await svc.channel.payout_lines(sub_mchid, bill_on)

    per_store = await asyncio.gather(*(one(s) for s in await stores(svc, mall_id)))
    return [line for lines in per_store for line in lines]


async def book(svc: Services, mall_id: str, lines: list[ChannelPayoutLine]) -> PayoutBooking:
    """Book each line in its own transaction; a line already booked is left as it is."""
    outcome = PayoutBooking()
    async with svc.pool.acquire() as conn:
        for line in lines:
            if line.amount_fen <= 0:
                outcome.refused.append(line)
                continue
            transfer = payout_transfer(line.sub_mchid, line.payout_id, line.amount_fen)
            try:
                async with conn.transaction():
                    posted = await ledger_repo.post_transfer(conn, mall_id, transfer, line.paid_at)
            except (asyncpg.CheckViolationError, asyncpg.IntegrityConstraintViolationError):
                # Our books hold less available money for the store than the channel paid
                # out: never forced; reconciliation reports it for finance.
                log.error("payout_exceeds_available", sub_mchid=line.sub_mchid, payout_id=line.payout_id,
                          amount_fen=line.amount_fen)
                outcome.refused.append(line)
                continue
            if posted is None:
                outcome.already_booked += 1
            else:
                outcome.booked += 1
    if outcome.booked:
        log.info("payouts_booked", booked=outcome.booked, already=outcome.already_booked)
    return outcome
