"""What a shopper holds at the mall: coupons (with their state) and points. The shopper's
openid is read at the edge (`gateway.api.requests.mall.parse_openid`)."""

from __future__ import annotations

from coupons import repo as coupons_repo
from gateway.services.context import Services
from ledger import repo as ledger_repo
from points.rules import member_account


async def coupons(svc: Services, mall_id: str, openid: str, limit: int, offset: int) -> dict:
    now = svc.clock()
    async with svc.pool.acquire() as conn:
        rows, total = await coupons_repo.coupons_of_shopper(conn, mall_id, openid, limit, offset)
    return {"total_count": total, "offset": offset, "limit": limit, "data": [_coupon(r, now) for r in rows]}


def _coupon(row, now) -> dict:
    state = row["state"]
    if state == "issued" and row["valid_until"] <= now:
        state = "expired"
    return {"coupon_id": row["coupon_id"], "campaign_id": str(row["campaign_id"]),
            "campaign_name": row["campaign_name"], "sub_mchid": row["sub_mchid"],
            "amount": row["discount_fen"], "min_spend": row["min_spend_fen"], "state": state,
            "issued_at": row["issued_at"].isoformat(), "valid_until": row["valid_until"].isoformat()}


async def points(svc: Services, mall_id: str, openid: str) -> dict:
    async with svc.pool.acquire() as conn:
        balance = await ledger_repo.balance_fen(conn, mall_id, member_account(mall_id, openid))
    return {"openid": openid, "total_points": balance or 0}
