"""Who money may be split to: the mall itself, a store's guides, brand headquarters; and
the approvals that let a franchise store split more than 30% away."""

from __future__ import annotations

from dataclasses import dataclass, replace

from gateway.channel import ChannelError, ChannelReceiver, ChannelReceiverType
from gateway.domain_errors import ChannelRefused, ChannelUnavailable, NotFound, NotPermitted, Refused
from gateway.repo import guides as guides_repo
from gateway.repo import tenants as tenants_repo
from gateway.services.context import Services
from ledger import accounts
from ledger import repo as ledger_repo
from splitting.rules import Approval, check_contract

NAME_CHARS_MAX = 64
REASON_CHARS_MAX = 500


def ledger_account_for(svc: Services, type_: str, account: str, guide_id: str | None = None) -> str:
    if type_ == "MERCHANT_ID":
        return accounts.MALL_COMMISSION if account == svc.settings.sp_mchid else accounts.receiver(account)
    assert guide_id is not None, "persons receive splits only as guides"
    return accounts.guide_rewards(guide_id)


async def _add_at_channel(svc: Services, sub_mchid: str, type_: str, account: str, name: str | None,
                          relation_type: str) -> None:
    try:
        await svc.channel.add_receiver(ChannelReceiver(
            sub_mchid=sub_mchid, appid=svc.settings.sp_appid, sub_appid=None,
            type=ChannelReceiverType(type_), account=account, name=name, relation_type=relation_type))
    except ChannelError as exc:
        if exc.retryable:
            raise ChannelUnavailable() from None
        raise ChannelRefused("receiver", exc.code) from None


async def add_receiver(svc: Services, mall_id: str, sub_mchid: str, type_: str, account: str,
                       name: str | None, relation_type: str) -> dict:
    """A merchant receiver (the mall, a brand headquarters) for one store's splits; the
    fields are checked by the caller (`gateway.api.requests.profitsharing`)."""
    assert type_ == "MERCHANT_ID", "persons receive splits as guides"
    await _require_tenant(svc, mall_id, sub_mchid)
    await _add_at_channel(svc, sub_mchid, type_, account, name, relation_type)
    ledger_account = ledger_account_for(svc, type_, account)
    async with svc.pool.acquire() as conn, conn.transaction():
        if ledger_account != accounts.MALL_COMMISSION:
            await ledger_repo.ensure_accounts(conn, mall_id, accounts.receiver_accounts(account))
        await guides_repo.insert_receiver(conn, mall_id, sub_mchid, type_, account, relation_type,
                                          ledger_account, svc.clock())
    return {"sub_mchid": sub_mchid, "type": type_, "account": account, "relation_type": relation_type}


async def ensure_mall_receiver(svc: Services, mall_id: str, sub_mchid: str) -> None:
    """The mall's own merchant account receives commissions from every store."""
    async with svc.pool.acquire() as conn:
        if await guides_repo.receiver(conn, mall_id, sub_mchid, "MERCHANT_ID", svc.settings.sp_mchid):
            return
    await add_receiver(svc, mall_id, sub_mchid, "MERCHANT_ID", svc.settings.sp_mchid,
                       svc.settings.mall_name, "SERVICE_PROVIDER")


async def split_parts(svc: Services, mall_id: str, sub_mchid: str, receivers) -> list[dict]:
    """A split's receivers (checked at the edge) as the split's parts: each with the ledger
    account it is paid to, refused unless it is a receiver of this store."""
    if any(r["type"] == "MERCHANT_ID" and r["account"] == svc.settings.sp_mchid for r in receivers):
        await ensure_mall_receiver(svc, mall_id, sub_mchid)
    parts = []
    async with svc.pool.acquire() as conn:
        for index, item in enumerate(receivers):
            ledger_account = await _ledger_account(svc, conn, mall_id, sub_mchid, item["type"], item["account"])
            if ledger_account is None:
                raise Refused("receiver_not_registered", f"receivers[{index}] is not a receiver of this store")
            parts.append({**item, "ledger_account": ledger_account, "returnable": item["type"] == "MERCHANT_ID"})
    return parts


async def _ledger_account(svc: Services, conn, mall_id: str, sub_mchid: str, type_: str, account: str) -> str | None:
    if type_ == "MERCHANT_ID" and account == svc.settings.sp_mchid:
        return ledger_account_for(svc, type_, account)
    found = await guides_repo.receiver(conn, mall_id, sub_mchid, type_, account)
    return None if found is None else found["ledger_account"]


async def delete_receiver(svc: Services, mall_id: str, sub_mchid: str, type_: str, account: str) -> dict | None:
    """None when the store has no such receiver."""
    async with svc.pool.acquire() as conn:
        row = await guides_repo.delete_receiver(conn, mall_id, sub_mchid, type_, account, svc.clock())
    return None if row is None else {"sub_mchid": sub_mchid, "type": row["type"], "account": row["account"]}


@dataclass(frozen=True, slots=True)
class NewGuide:  # checked at the edge (`gateway.api.requests.mall.parse_guide`)
    guide_id: str
    sub_mchid: str
    openid: str
    name: str


async def register_guide(svc: Services, mall_id: str, guide: NewGuide) -> dict:
    guide_id, sub_mchid, openid, name = guide.guide_id, guide.sub_mchid, guide.openid, guide.name
    await _require_tenant(svc, mall_id, sub_mchid)
    await _add_at_channel(svc, sub_mchid, "PERSONAL_OPENID", openid, None, "STAFF")
    async with svc.pool.acquire() as conn, conn.transaction():
        created = await guides_repo.insert_guide(conn, mall_id, guide_id, sub_mchid, openid, name, svc.clock())
        if created is None:
            raise Refused("guide_exists", "this guide_id or openid is already registered")
        await ledger_repo.ensure_accounts(conn, mall_id, accounts.guide_accounts(guide_id))
        await guides_repo.insert_receiver(conn, mall_id, sub_mchid, "PERSONAL_OPENID", openid, "STAFF",
                                          accounts.guide_rewards(guide_id), svc.clock())
    return guide_json(created)


async def guides_page(svc: Services, mall_id: str, limit: int, offset: int) -> dict:
    async with svc.pool.acquire() as conn:
        rows = await guides_repo.guides(conn, mall_id, limit, offset)
    return {"data": [guide_json(r) for r in rows], "offset": offset, "limit": limit}


def guide_json(row) -> dict:
    # The openid is the guide's identity at WeChat: shown to the admin who registered it,
    # never logged.
    return {"guide_id": row["guide_id"], "sub_mchid": row["sub_mchid"], "name": row["name"],
            "openid": row["openid"]}


@dataclass(frozen=True, slots=True)
class HighRatioApproval:  # checked at the edge (`gateway.api.requests.mall.parse_approval`)
    approved_by: str
    reason: str
    max_ratio_bps: int


async def approve_high_ratio(svc, mall_id: str, sub_mchid: str, approval: HighRatioApproval) -> dict:
    """Record who allowed how much and why, then raise the store's cap to it."""
    approved_by, reason, ratio = approval.approved_by, approval.reason, approval.max_ratio_bps
    now = svc.clock()
    async with svc.pool.acquire() as conn, conn.transaction():
        tenant = await tenants_repo.tenant(conn, mall_id, sub_mchid)
        if tenant is None:
            raise NotFound("tenant")
        check_contract(replace(tenant.contract, max_ratio_bps=ratio, approval=Approval(
            approved_by=approved_by, approved_at=now, reason=reason, max_ratio_bps=ratio)))
        approval = await guides_repo.insert_approval(conn, mall_id, sub_mchid, approved_by, now, reason, ratio, now)
        await guides_repo.set_tenant_cap(conn, mall_id, sub_mchid, ratio, approval["approval_id"])
    return {"approval_id": approval["approval_id"], "sub_mchid": sub_mchid, "approved_by": approved_by,
            "approved_at": approval["approved_at"].isoformat(), "reason": reason, "max_ratio_bps": ratio}


async def approvals(svc: Services, mall_id: str, sub_mchid: str) -> dict:
    async with svc.pool.acquire() as conn:
        rows = await guides_repo.approvals(conn, mall_id, sub_mchid)
    return {"data": [{"approval_id": r["approval_id"], "approved_by": r["approved_by"],
                      "approved_at": r["approved_at"].isoformat(), "reason": r["reason"],
                      "max_ratio_bps": r["max_ratio_bps"]} for r in rows]}


async def _require_tenant(svc: Services, mall_id: str, sub_mchid: str) -> None:
    async with svc.pool.acquire() as conn:
        if await tenants_repo.tenant(conn, mall_id, sub_mchid) is None:
            raise NotPermitted("store_not_in_mall", "sub_mchid is not a store of this mall")
