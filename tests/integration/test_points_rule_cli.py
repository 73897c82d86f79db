"""`mallpay points rule`: the mall sets and reads a store's points per yuan."""

from __future__ import annotations

import json

from gateway.services import onboarding
from points import repo as points_repo
from tests.integration.test_finance_cli import _mallpay
from tests.support import add_tenant

MALL = "1900000100"
STORE = "1900000201"


async def test_points_rule_command_sets_shows_and_refuses(db_pool, database_url):
    await onboarding.ensure_mall(db_pool, MALL, "wxmall", "Test mall")
    await add_tenant(db_pool, MALL, STORE)

    code, out, err = await _mallpay(database_url, "points", "rule", "--sub-mchid", STORE)
    assert code == 0, err.decode()
    assert json.loads(out)["source"] == "mall_default"

    code, out, err = await _mallpay(database_url, "points", "rule", "--sub-mchid", STORE, "--points-per-yuan", "5")
    assert code == 0, err.decode()
    assert (json.loads(out)["points_per_yuan"], json.loads(out)["source"]) == (5, "store_rule")
    async with db_pool.acquire() as conn:
        assert await points_repo.rule(conn, MALL, STORE) == 5

    code, _, err = await _mallpay(database_url, "points", "rule", "--sub-mchid", STORE, "--points-per-yuan", "-2")
    assert code == 1 and b"out_of_range" in err
    code, _, err = await _mallpay(database_url, "points", "rule", "--sub-mchid", "1900000999", "--points-per-yuan", "2")
    assert code == 1 and b"tenant_not_found" in err
    async with db_pool.acquire() as conn:
        assert await points_repo.rule(conn, MALL, STORE) == 5
