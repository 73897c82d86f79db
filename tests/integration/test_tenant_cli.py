"""`mallpay tenant create|approve|list`: a store onboarded from the command line, its cap
raised by a recorded approval, and a refusal printed as its code with nothing changed."""

from __future__ import annotations

import json

from gateway.repo import tenants as tenants_repo
from tests.integration.test_finance_cli import _mallpay

MALL = "1900000100"
STORE = "1900000201"


async def test_tenant_commands_create_approve_list_and_refuse(db_pool, database_url):
    code, out, err = await _mallpay(database_url, "tenant", "create", "--sub-mchid", STORE, "--name", "Tea shop",
                                    "--floor", "B1", "--commission-bps", "500")
    assert code == 0, err.decode()
    created = json.loads(out)
    assert (created["sub_mchid"], created["name"], created["floor"]) == (STORE, "Tea shop", "B1")

    code, out, err = await _mallpay(database_url, "tenant", "approve", "--sub-mchid", STORE,
                                    "--max-ratio-bps", "5000", "--approved-by", "ops", "--reason", "brand contract")
    assert code == 0, err.decode()
    assert json.loads(out)["max_ratio_bps"] == 5000

    code, _, err = await _mallpay(database_url, "tenant", "approve", "--sub-mchid", STORE,
                                  "--max-ratio-bps", "20000", "--approved-by", "ops", "--reason", "too much")
    assert code == 1 and b"out_of_range" in err
    async with db_pool.acquire() as conn:
        tenant = await tenants_repo.tenant(conn, MALL, STORE)
    assert (tenant.contract.commission_bps, tenant.contract.max_ratio_bps) == (500, 5000)

    code, out, err = await _mallpay(database_url, "tenant", "list")
    assert code == 0, err.decode()
    assert out.decode().split("\n")[0].split("\t") == [STORE, "B1", "", "Tea shop"]
