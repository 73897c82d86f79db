"""What the mall learns from its coupons: attribution (issued, redeemed, discount spent,
sales driven, trigger store → redeeming store) and uplift over the random hold-out."""

from __future__ import annotations

from coupons import repo as coupons_repo
from coupons.uplift import Arm, uplift
from gateway.services.context import Services

WINDOW_DAYS_MAX = 90  # a report's window, read at the edge (`gateway.api.requests.mall.parse_window_days`)


async def campaign_report(svc: Services, mall_id: str, campaign_row, window_days: int) -> dict:
    campaign_id = campaign_row["campaign_id"]
    async with svc.pool.acquire() as conn:
        counts = await coupons_repo.attribution(conn, mall_id, campaign_id)
        flows = await coupons_repo.flows(conn, mall_id, campaign_id)
        lift = await _uplift(conn, mall_id, campaign_id, window_days)
    return {"campaign_id": str(campaign_id), "name": campaign_row["name"], "sub_mchid": campaign_row["sub_mchid"],
            "issued": counts["issued"], "redeemed": counts["redeemed"], "discount_spent": counts["discount_fen"],
            "sales_driven": counts["sales_fen"], "flows": [_flow(f) for f in flows], "uplift": lift}


async def mall_report(svc: Services, mall_id: str, window_days: int) -> dict:
    """Every campaign's report and the mall's overall uplift (all target stores)."""
    async with svc.pool.acquire() as conn:
        ids = await coupons_repo.all_campaign_ids(conn, mall_id)
        rows = [await coupons_repo.campaign(conn, mall_id, cid) for cid in ids]
        overall = await _uplift(conn, mall_id, None, window_days)
        flows = await coupons_repo.flows(conn, mall_id, None)
    campaigns = [await campaign_report(svc, mall_id, row, window_days) for row in rows]
    return {"window_days": window_days, "campaigns": campaigns,
            "overall": {"flows": [_flow(f) for f in flows], "uplift": overall}}


def _flow(row) -> dict:
    return {"trigger_sub_mchid": row["trigger_sub_mchid"], "redeeming_sub_mchid": row["sub_mchid"],
            "redeemed": row["redeemed"], "sales": row["sales_fen"]}


async def _uplift(conn, mall_id: str, campaign_id: int | None, window_days: int) -> dict:
    arms = {True: Arm(0, 0, 0, 0), False: Arm(0, 0, 0, 0)}
    for row in await coupons_repo.uplift_arms(conn, mall_id, campaign_id, window_days):
        arms[row["held_out"]] = Arm(row["decisions"], row["visits"], row["sales_fen"], int(row["sales_sq_fen2"]))
    spent = await coupons_repo.discount_spent(conn, mall_id, campaign_id)
    result = uplift(arms[False], arms[True], spent)
    return {
        "window_days": window_days,
        "treated": {"decisions": result.treated.decisions, "visits": result.treated.visits,
                    "visit_rate_bps": result.treated_rate_bps, "sales": result.treated.sales_fen},
        "held_out": {"decisions": result.held_out.decisions, "visits": result.held_out.visits,
                     "visit_rate_bps": result.held_out_rate_bps, "sales": result.held_out.sales_fen},
        "visit_rate_difference_bps": _estimate(result.rate_difference_bps),
        "incremental_visits": _estimate(result.incremental_visits),
        "incremental_sales": _estimate(result.incremental_sales_fen),
        "cost_per_incremental_visit": result.cost_per_incremental_visit_fen,
        "confidence": "95%",
    }


def _estimate(estimate) -> dict | None:
    return None if estimate is None else estimate.as_json()
