"""The mall backend's profit-sharing commands (WeChat's /v3/profitsharing): a split, an
unfreeze, their queries, an order's unsplit amount and a store's cap. Each is one call
from its handler; the rules are in `splits`, `receivers` and `channel_caps`."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.caller import Caller
from gateway.repo import tenants as tenants_repo
from gateway.services import channel_caps, receivers, splits
from gateway.services.context import Services
from gateway.shapes.profitsharing import split_answer, unsplit_amount_json
from splitting import repo


@dataclass(frozen=True, slots=True)
class SplitRequest:
    sub_mchid: str
    transaction_id: str
    out_order_no: str
    unfreeze_unsplit: bool
    receivers: tuple[dict, ...]  # each {"type", "account", "amount", "description"}, checked at the edge
    request_hash: str


@dataclass(frozen=True, slots=True)
class UnfreezeRequest:
    sub_mchid: str
    transaction_id: str
    out_order_no: str
    request_hash: str


async def request_split(svc: Services, caller: Caller, req: SplitRequest) -> dict:
    trade = await splits.paid_trade(svc, caller.mall_id, req.sub_mchid, req.transaction_id)
    parts = await receivers.split_parts(svc, caller.mall_id, req.sub_mchid, req.receivers)
    await channel_caps.refresh(svc, caller.mall_id, req.sub_mchid)  # prepare checks the lower cap
    return await _prepare_and_submit(
        svc, caller, (caller.mall_id, req.sub_mchid, trade["out_trade_no"]), req.transaction_id, req.out_order_no,
        "split", parts, req.request_hash, unfreeze_unsplit=req.unfreeze_unsplit)


async def request_unfreeze(svc: Services, caller: Caller, req: UnfreezeRequest) -> dict:
    trade = await splits.paid_trade(svc, caller.mall_id, req.sub_mchid, req.transaction_id)
    return await _prepare_and_submit(
        svc, caller, (caller.mall_id, req.sub_mchid, trade["out_trade_no"]), req.transaction_id, req.out_order_no,
        "unfreeze", [], req.request_hash)


async def _prepare_and_submit(svc: Services, caller: Caller, key, transaction_id: str, out_order_no: str, kind: str,
                              parts: list[dict], request_hash: str, **options) -> dict:
    async with svc.pool.acquire() as conn, conn.transaction():
        split = await splits.prepare(
            svc, conn, key=key, transaction_id=transaction_id, out_order_no=out_order_no, kind=kind,
            purpose="api", parts=parts, request_hash=request_hash, client_id=caller.client_id, **options)
    if split["state"] == "PREPARED":
        split = await splits.submit(svc, split)
    return split_answer(split)


async def find_split(svc: Services, caller: Caller, sub_mchid: str, out_order_no: str,
                     transaction_id: str | None) -> dict | None:
    """A split order as its query answers it, asking the channel while it is in flight;
    None when missing, of another order, or another store's."""
    async with svc.pool.acquire() as conn:
        split = await repo.split_order(conn, caller.mall_id, sub_mchid, out_order_no)
    if split is None or split["transaction_id"] != transaction_id or not caller.sees_store(split["sub_mchid"]):
        return None
    return split_answer(await splits.brought_up_to_date(svc, split))


async def unsplit_amount(svc: Services, caller: Caller, transaction_id: str) -> dict | None:
    """None when no paid order of the caller's has this transaction_id."""
    async with svc.pool.acquire() as conn:
        row = await repo.funds_of_transaction(conn, caller.mall_id, transaction_id)
    if row is None or not caller.sees_store(row["sub_mchid"]):
        return None
    return unsplit_amount_json(transaction_id, repo.funds_from_row(row))


async def merchant_config(svc: Services, caller: Caller, sub_mchid: str) -> dict | None:
    """What the channel will actually accept: the lower of the contract's cap and its own.
    None for a store that is not the caller's to see."""
    async with svc.pool.acquire() as conn:
        tenant = await tenants_repo.tenant(conn, caller.mall_id, sub_mchid)
    if tenant is None or not caller.sees_store(tenant.sub_mchid):
        return None
    channel = await channel_caps.refresh(svc, caller.mall_id, tenant.sub_mchid)
    max_ratio = tenant.contract.max_ratio_bps if channel is None else min(tenant.contract.max_ratio_bps, channel)
    return {"sub_mchid": tenant.sub_mchid, "max_ratio": max_ratio}
