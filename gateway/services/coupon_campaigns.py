"""Coupon campaigns: create, read, change (budget, caps, end, pause), each validated.

The admin manages every campaign; a store's own `tenant` credentials manage only the
campaigns it funds itself. Any other store's campaign answers exactly as a missing one.
"""

from __future__ import annotations

import structlog

from coupons import repo as coupons_repo
from coupons.postings import receivable_accounts
from ledger import repo as ledger_repo
from coupons.campaigns import CampaignChange, CampaignInvalid, CampaignSpec, CampaignState, Funder, check_change
from gateway.domain_errors import InvalidField, NotFound, NotPermitted, Refused
from gateway.repo import tenants as tenants_repo
from gateway.repo.clients import Caller
from gateway.services import next_store
from gateway.services.context import Services

log = structlog.get_logger(__name__)

STATE_ISSUES = frozenset({"below_committed", "campaign_ended"})
MANAGERS = ("admin", "tenant")


def refused(exc: CampaignInvalid) -> Exception:
    if exc.issue in STATE_ISSUES:
        return Refused(exc.issue, exc.message, field=exc.field)
    return InvalidField(exc.field, exc.issue, exc.message)


def _check_manager(caller: Caller) -> None:
    if caller.role not in MANAGERS:
        raise NotPermitted("role_not_allowed", f"this needs role {' or '.join(MANAGERS)}")


async def create_campaign(svc: Services, caller: Caller, spec: CampaignSpec) -> dict:
    """A campaign (its fields checked at the edge) for a store of this mall, funded by the
    store itself or, on the admin's word alone, by the mall."""
    _check_manager(caller)
    if caller.role == "tenant":
        if spec.sub_mchid != caller.sub_mchid:
            raise NotPermitted("other_store", "a store creates campaigns for itself only")
        if spec.funder is not Funder.STORE:
            raise NotPermitted("mall_funding_needs_admin", "only the mall's admin commits the mall's money")
    async with svc.pool.acquire() as conn:
        if await tenants_repo.tenant(conn, caller.mall_id, spec.sub_mchid) is None:
            raise Refused("store_not_in_mall", "sub_mchid is not a store of this mall", field="sub_mchid")
        for store in spec.trigger.stores:
            if await tenants_repo.tenant(conn, caller.mall_id, store) is None:
                raise Refused("store_not_in_mall", f"trigger store {store} is not in this mall",
                              field="trigger.stores")
        if spec.funder is Funder.MALL:  # the account its discounts will be owed on
            await ledger_repo.ensure_accounts(conn, caller.mall_id, receivable_accounts(spec.sub_mchid))
        row = await coupons_repo.insert_campaign(conn, caller.mall_id, spec, svc.clock())
    await next_store.refresh_campaigns(svc)  # this process issues from it at once
    return campaign_json(row)


async def campaign_row(svc: Services, caller: Caller, campaign_id: int):
    """The campaign if the caller may see it; a missing-resource answer otherwise."""
    _check_manager(caller)
    async with svc.pool.acquire() as conn:
        row = await coupons_repo.campaign(conn, caller.mall_id, campaign_id)
    if row is None or (caller.role == "tenant" and not _owns(caller, row)):
        raise NotFound("campaign")
    return row


def _owns(caller: Caller, row) -> bool:
    return row["sub_mchid"] == caller.sub_mchid and row["funder"] == Funder.STORE.value


async def list_campaigns(svc: Services, caller: Caller, sub_mchid: str | None, limit: int, offset: int) -> dict:
    _check_manager(caller)
    if caller.role == "tenant":
        sub_mchid = caller.sub_mchid
    async with svc.pool.acquire() as conn:
        rows, total = await coupons_repo.campaigns(conn, caller.mall_id, sub_mchid, limit, offset)
    if caller.role == "tenant":
        rows = [r for r in rows if _owns(caller, r)]
    return {"total_count": total, "offset": offset, "limit": limit, "data": [campaign_json(r) for r in rows]}


async def change_campaign(svc: Services, caller: Caller, campaign_id: int, change: CampaignChange) -> dict:
    """Apply a change (its fields checked at the edge) if the campaign's state and what it
    has committed allow it."""
    row = await campaign_row(svc, caller, campaign_id)
    campaign = coupons_repo.campaign_of(row)
    try:
        spec = check_change(campaign.state, campaign.spec, change, row["committed_fen"], row["committed_count"])
    except CampaignInvalid as exc:
        raise refused(exc) from None
    state = change.state or campaign.state
    async with svc.pool.acquire() as conn:
        changed = await coupons_repo.change_campaign(conn, caller.mall_id, campaign.campaign_id, spec, state,
                                                     svc.clock())
        if changed is None:  # issuance committed more, or someone ended it, since we read it
            fresh = await coupons_repo.campaign(conn, caller.mall_id, campaign.campaign_id)
            if fresh["state"] == CampaignState.ENDED.value:
                raise Refused("campaign_ended", "an ended campaign cannot change", field="state")
            raise Refused("below_committed", "the budget is below what is already committed",
                          field="budget")
    await next_store.refresh_campaigns(svc)
    return campaign_json(changed)


async def release_expired(svc: Services) -> int:
    """One pass: coupons expired unused give their amount back to their campaigns' budgets
    (bounded by `coupon_expiry_batch_max`); how many coupons expired."""
    async with svc.pool.acquire() as conn:
        released = await coupons_repo.expire_coupons(conn, svc.settings.sp_mchid, svc.clock(),
                                                     svc.settings.coupon_expiry_batch_max)
    if released:
        log.info("coupon_budget_released", coupons=sum(r["coupons"] for r in released),
                 discount_fen=sum(r["discount_fen"] for r in released))
        await next_store.refresh_campaigns(svc)  # a campaign out of budget may issue again
    return sum(r["coupons"] for r in released)


def campaign_json(row) -> dict:
    body = {
        "campaign_id": str(row["campaign_id"]), "name": row["name"], "sub_mchid": row["sub_mchid"],
        "funded_by": row["funder"], "state": row["state"],
        "discount": {"type": row["discount_kind"], "amount": row["discount_fen"]},
        "budget": {"amount": row["budget_fen"], "count": row["budget_count"],
                   "committed_amount": row["committed_fen"], "committed_count": row["committed_count"]},
        "per_shopper_max": row["per_shopper_max"],
        "starts_at": row["starts_at"].isoformat(), "ends_at": row["ends_at"].isoformat(),
        "coupon_valid_seconds": row["coupon_valid_s"],
        "trigger": {"stores": list(row["trigger_stores"]), "floors": list(row["trigger_floors"]),
                    "categories": list(row["trigger_categories"]), "min_spend": row["trigger_min_spend_fen"]},
    }
    if row["discount_kind"] == "threshold":
        body["discount"]["threshold"] = row["threshold_fen"]
    if row["daily_count_max"] is not None:
        body["daily_count_max"] = row["daily_count_max"]
    return body
