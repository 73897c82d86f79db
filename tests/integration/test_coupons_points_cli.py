"""`mallpay coupons subsidy-payouts` and `mallpay points syncs|retry-sync`: operators list
the mall's coupon-subsidy payouts and the points changes WeChat never took, and retry one."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from coupons import repo as coupons_repo
from gateway.services import onboarding
from points import repo as points_repo
from tests.integration.test_finance_cli import _mallpay
from tests.support import add_tenant

MALL = "1900000100"
STORE, OTHER = "1900000201", "1900000202"


async def test_subsidy_payouts_are_listed_newest_first_and_by_store(db_pool, database_url):
    await onboarding.ensure_mall(db_pool, MALL, "wxmall", "Test mall")
    for store in (STORE, OTHER):
        await add_tenant(db_pool, MALL, store)
    async with db_pool.acquire() as conn:
        for number, (store, day) in enumerate([(STORE, 1), (OTHER, 2), (STORE, 3)]):
            await coupons_repo.insert_subsidy_payout(conn, MALL, f"SUBPAY-{number:04d}", store, 100 * (number + 1),
                                                     datetime(2026, 9, day, tzinfo=timezone.utc))
    code, out, err = await _mallpay(database_url, "coupons", "subsidy-payouts")
    assert code == 0, err.decode()
    assert [line.split("\t")[2:] for line in out.decode().splitlines()] == [
        ["SUBPAY-0002", "300"], ["SUBPAY-0001", "200"], ["SUBPAY-0000", "100"]]
    code, out, err = await _mallpay(database_url, "coupons", "subsidy-payouts", "--sub-mchid", STORE, "--json")
    assert code == 0, err.decode()
    assert [p["out_payout_no"] for p in json.loads(out)["data"]] == ["SUBPAY-0002", "SUBPAY-0000"]
    code, _, err = await _mallpay(database_url, "coupons", "subsidy-payouts", "--sub-mchid", "shop-1")
    assert code == 1 and b"bad_format" in err
    code, _, err = await _mallpay(database_url, "coupons", "subsidy-payouts", "--sub-mchid", "1900099999")
    assert code == 1 and b"RESOURCE_NOT_EXISTS" in err


async def test_dead_points_syncs_are_listed_and_retried(db_pool, database_url):
    await onboarding.ensure_mall(db_pool, MALL, "wxmall", "Test mall")
    await add_tenant(db_pool, MALL, STORE)
    at = datetime(2026, 9, 1, tzinfo=timezone.utc)
    async with db_pool.acquire() as conn:
        await points_repo.insert_sync(conn, {
            "mall_id": MALL, "kind": "points_earn", "ref": f"{STORE}/ORDER-0001", "sub_mchid": STORE,
            "transaction_id": "4200000000000000001", "appid": "wxmall", "openid": "oShopper", "earn_points": True,
            "increased_points": 12, "points_update_time": at.isoformat(), "no_points_remarks": None,
            "account": "points:member:none"})
        await conn.execute("UPDATE points_syncs SET state = 'dead', attempts = 12, last_error = 'SYSTEM_ERROR'")
        sync_id = await conn.fetchval("SELECT sync_id FROM points_syncs")
    code, out, err = await _mallpay(database_url, "points", "syncs")
    assert code == 0, err.decode()
    assert out.decode().split("\t")[:6] == [str(sync_id), "points_earn", f"{STORE}/ORDER-0001", "12", "dead", "12"]
    code, out, err = await _mallpay(database_url, "points", "retry-sync", str(sync_id))
    assert code == 0, err.decode()
    assert (json.loads(out)["state"], json.loads(out)["attempts"]) == ("pending", 0)
    code, _, err = await _mallpay(database_url, "points", "retry-sync", str(sync_id))
    assert code == 1 and b"points_sync_not_dead" in err
    code, out, _ = await _mallpay(database_url, "points", "syncs", "--state", "pending", "--json")
    assert json.loads(out)["total_count"] == 1
    code, _, err = await _mallpay(database_url, "points", "syncs", "--state", "stuck")
    assert code == 1 and b"PARAM_ERROR out_of_range: state: one of dead, pending, synced" in err
