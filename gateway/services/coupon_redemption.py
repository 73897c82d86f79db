"""Redeeming a coupon at order creation (`mall_info.coupon_id` + `original_total`).

The coupon is reserved by the order in the same transaction that creates it, with every
rule in one conditional UPDATE (owner, store, validity, minimum spend, campaign not
ended), so concurrent orders reserve it at most once. The order's `amount.total` must be
the original total less the discount. Paying the order marks it used (with the payment's
rows); closing it releases it (with the close).
"""

from __future__ import annotations

from coupons import repo as coupons_repo
from coupons.campaigns import Funder, discounted_total_fen
from coupons.postings import subsidy_transfer
from coupons.issuing import AfterRefund, coupon_after_refund
from gateway.errors import InvalidRequest
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
        raise InvalidRequest(NOT_APPLICABLE, "the coupon cannot be used for this order",
                             why=await _why_not(conn, order, openid, original_fen, now))
    expected_fen = discounted_total_fen(coupon["discount_fen"], coupon["min_spend_fen"], original_fen)
    if order["total_fen"] != expected_fen:
        raise InvalidRequest(NOT_APPLICABLE, "amount.total must be original_total less the coupon's discount",
                             why="amount_not_discounted", expected_total=expected_fen)


async def _why_not(conn, order, openid: str, original_fen: int, now) -> str:
    """The first rule the coupon breaks; another shopper's coupon reads as unknown."""
    coupon = await coupons_repo.coupon(conn, order["mall_id"], order["mall_info"]["coupon_id"])
    if coupon is None or coupon["openid"] != openid:
        return "coupon_not_found"
    if coupon["sub_mchid"] != order["sub_mchid"]:
        return "other_store"
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
    coupon back while it is still valid; a partial refund keeps it used."""
    coupon = await coupons_repo.coupon_of_order(conn, refund["mall_id"], refund["sub_mchid"], refund["out_trade_no"])
    if coupon is None or coupon["state"] != "used":
        return
    refunded_fen = await points_repo.refunded_of_order(conn, refund["mall_id"], refund["sub_mchid"],
                                                       refund["out_trade_no"])
    policy = coupon_after_refund(paid_fen=refund["total_fen"], refunded_fen=refunded_fen,
                                 valid_until=coupon["valid_until"], at=now)
    if policy is AfterRefund.RETURNED:
        await coupons_repo.return_coupon(conn, refund["mall_id"], refund["sub_mchid"], refund["out_trade_no"], now)


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
