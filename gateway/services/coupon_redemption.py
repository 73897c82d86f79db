"""Redeeming a coupon at order creation (`mall_info.coupon_id` + `original_total`).

The coupon is reserved by the order in the same transaction that creates it, with every
rule in one conditional UPDATE (owner, store, validity, minimum spend, campaign not
ended), so concurrent orders reserve it at most once. The order's `amount.total` must be
the original total less the discount. Paying the order marks it used (with the payment's
rows); closing it releases it (with the close).
"""

from __future__ import annotations

from dataclasses import dataclass

from coupons import repo as coupons_repo
from coupons.campaigns import Funder, discounted_total_fen
from coupons.postings import (
    coupon_receivable, payout_transfer, receivable_accounts, reverse_transfer, subsidy_to_reverse, subsidy_transfer,
)
from coupons.issuing import AfterRefund, coupon_after_refund
from gateway.domain_errors import NotFound, NotPermitted, Refused
from gateway.repo import tenants as tenants_repo
from ledger import repo as ledger_repo
from points import repo as points_repo

NOT_APPLICABLE = "coupon_not_applicable"


async def reserve(conn, order, now) -> None:
    """Reserve the order's coupon or raise (the caller's transaction then rolls back)."""
    info = order["mall_info"]
    openid = order["payer_sp_openid"] or order["payer_sub_openid"]
    original_fen = info["original_total"]
    coupon = await coupons_repo.reserve_coupon(
        conn, mall_id=order["mall_id"], coupon_id=info["coupon_id"], openid=openid, sub_mchid=order["sub_mchid"],
        out_trade_no=order["out_trade_no"], at=now, original_total_fen=original_fen)
    if coupon is None:
        raise Refused(NOT_APPLICABLE, "the coupon cannot be used for this order",
                      why=await _why_not(conn, order, openid, original_fen, now))
    expected_fen = discounted_total_fen(coupon["discount_fen"], coupon["min_spend_fen"], original_fen)
    if order["total_fen"] != expected_fen:
        raise Refused(NOT_APPLICABLE, "amount.total must be original_total less the coupon's discount",
                      why="amount_not_discounted", expected_total=expected_fen)


async def _why_not(conn, order, openid: str, original_fen: int, now) -> str:
    """The first rule the coupon breaks; another shopper's coupon reads as unknown."""
    coupon = await coupons_repo.coupon(conn, order["mall_id"], order["mall_info"]["coupon_id"])
    if coupon is None or coupon["openid"] != openid:
        return "coupon_not_found"
    if coupon["sub_mchid"] != order["sub_mchid"]:
        return "other_store"
    if coupon["state"] == "expired" or (coupon["state"] == "issued" and coupon["valid_until"] <= now):
        return "coupon_expired"
    if coupon["state"] != "issued":
        return "coupon_in_use" if coupon["state"] == "reserved" else "coupon_used"
    if coupon["valid_until"] <= now:
        return "coupon_expired"
    if original_fen < coupon["min_spend_fen"]:
        return "below_min_spend"
    if await coupons_repo.campaign_state(conn, order["mall_id"], coupon["campaign_id"]) == "ended":
        return "campaign_ended"
    return "coupon_in_use"  # changed between the two reads: another order took it


async def after_refund(conn, refund, now) -> None:
    """Inside the refund's transaction, the written policy: a full refund gives the
    coupon back while it is still valid; a partial refund keeps it used. A mall-funded
    discount is taken back from the store's unpaid receivable in proportion to what was
    refunded (the store no longer sold that part at a discount)."""
    refunded_fen = await points_repo.refunded_of_order(conn, refund["mall_id"], refund["sub_mchid"],
                                                       refund["out_trade_no"])
    await _reverse_subsidy(conn, refund, refunded_fen, now)
    coupon = await coupons_repo.coupon_of_order(conn, refund["mall_id"], refund["sub_mchid"], refund["out_trade_no"])
    if coupon is None or coupon["state"] != "used":
        return
    policy = coupon_after_refund(paid_fen=refund["total_fen"], refunded_fen=refunded_fen,
                                 valid_until=coupon["valid_until"], at=now)
    if policy is AfterRefund.RETURNED:
        await coupons_repo.return_coupon(conn, refund["mall_id"], refund["sub_mchid"], refund["out_trade_no"], now)


async def _reverse_subsidy(conn, refund, refunded_fen: int, now) -> None:
    mall_id, sub_mchid = refund["mall_id"], refund["sub_mchid"]
    redemption = await coupons_repo.mall_redemption_for_update(conn, mall_id, sub_mchid, refund["out_trade_no"])
    if redemption is None:
        return
    receivable = await ledger_repo.balance_for_update(conn, mall_id, coupon_receivable(sub_mchid)) or 0
    due = subsidy_to_reverse(discount_fen=redemption["discount_fen"], paid_fen=redemption["paid_fen"],
                             refunded_fen=refunded_fen, reversed_already=redemption["subsidy_reversed_fen"],
                             receivable_fen=receivable)
    if due == 0:
        return
    await ledger_repo.post_transfer(conn, mall_id, reverse_transfer(sub_mchid, refund["out_refund_no"], due), now)
    await coupons_repo.add_subsidy_reversed(conn, mall_id, sub_mchid, refund["out_trade_no"], due)


PAYOUT_FIELDS = ("sub_mchid", "amount", "out_payout_no")


@dataclass(frozen=True, slots=True)
class SubsidyPayout:  # checked at the edge (`gateway.api.requests.mall.parse_subsidy_payout`)
    sub_mchid: str
    amount_fen: int
    out_payout_no: str


async def pay_out_subsidy(svc, mall_id: str, payout: SubsidyPayout) -> dict:
    """The mall pays a store what its coupons' subsidies owe (receivable → available).
    Idempotent by out_payout_no: the same request again answers the first payout; the
    number with another store or amount is refused. Never more than the receivable."""
    sub_mchid, amount_fen, out_payout_no = payout.sub_mchid, payout.amount_fen, payout.out_payout_no
    async with svc.pool.acquire() as conn, conn.transaction():
        done = await coupons_repo.subsidy_payout(conn, mall_id, out_payout_no)
        if done is not None:
            return _same_payout(done, sub_mchid, amount_fen)
        if await tenants_repo.tenant(conn, mall_id, sub_mchid) is None:
            raise NotFound("tenant")
        await ledger_repo.ensure_accounts(conn, mall_id, receivable_accounts(sub_mchid))
        owed = await ledger_repo.balance_for_update(conn, mall_id, coupon_receivable(sub_mchid)) or 0
        if amount_fen > owed:
            raise Refused("above_receivable", "amount is more than the mall owes the store for coupons",
                          receivable=owed)
        row = await coupons_repo.insert_subsidy_payout(conn, mall_id, out_payout_no, sub_mchid, amount_fen,
                                                       svc.clock())
        if row is None:  # a concurrent request took the number and committed first
            return _same_payout(await coupons_repo.subsidy_payout(conn, mall_id, out_payout_no), sub_mchid,
                                amount_fen)
        await ledger_repo.post_transfer(conn, mall_id, payout_transfer(sub_mchid, out_payout_no, amount_fen),
                                        row["paid_at"])
    return _payout_json(row)


async def subsidy_payouts(svc, caller, sub_mchid: str | None, limit: int, offset: int) -> dict | None:
    """The mall's coupon-subsidy payouts, newest first, of one store or (sub_mchid None)
    all, as `/v3/mall/payouts` lists the channel's: None when that store is not the
    caller's to see, exactly as for an unknown store. A store's own credentials name no
    store to list their own."""
    async with svc.pool.acquire() as conn:
        if sub_mchid is not None and (await tenants_repo.tenant(conn, caller.mall_id, sub_mchid) is None
                                      or not caller.sees_store(sub_mchid)):
            return None
        rows, total = await coupons_repo.subsidy_payouts(conn, caller.mall_id, sub_mchid, limit, offset)
    return {"total_count": total, "offset": offset, "limit": limit, "data": [_payout_json(r) for r in rows]}


def _same_payout(row, sub_mchid: str, amount_fen: int) -> dict:
    if (row["sub_mchid"], row["amount_fen"]) != (sub_mchid, amount_fen):
        raise Refused("out_payout_no_reused", "this out_payout_no paid another store or amount",
                      sub_mchid=row["sub_mchid"], amount=row["amount_fen"])
    return _payout_json(row)


def _payout_json(row) -> dict:
    return {"out_payout_no": row["out_payout_no"], "sub_mchid": row["sub_mchid"], "amount": row["amount_fen"],
            "paid_at": row["paid_at"].isoformat()}


async def coupon_to_confirm(conn, order):
    """The coupon the order reserved, read before the payment's one round trip."""
    if "coupon_id" not in order["mall_info"]:
        return None
    coupon = await coupons_repo.coupon_of_order(conn, order["mall_id"], order["sub_mchid"], order["out_trade_no"])
    return coupon if coupon is not None and coupon["state"] == "reserved" else None


def join_payment(order, coupon, effects, paid_at):
    """The payment's effects with its coupon's: the redemption row (its writer marks the
    coupon used) and, for a mall-funded coupon, the subsidy the mall now owes the store."""
    if coupon is None:
        return effects
    effects = effects.with_row("coupon_redemptions", {
        "mall_id": order["mall_id"], "coupon_id": coupon["coupon_id"], "out_trade_no": order["out_trade_no"],
        "original_total_fen": order["mall_info"]["original_total"], "paid_fen": order["total_fen"],
        "redeemed_at": paid_at.isoformat()})
    if coupon["funder"] == Funder.MALL.value:
        effects = effects.with_transfer(subsidy_transfer(order["sub_mchid"], order["out_trade_no"],
                                                         coupon["discount_fen"]))
    return effects
