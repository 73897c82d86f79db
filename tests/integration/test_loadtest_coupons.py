"""loadtests/run_load.py --coupons: 'on' seeds a usable campaign at every store through the
gateway's campaign service, and the comparison reports the p99 coupons add per pair of runs."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg

from gateway.identity import load_or_create_identity
from gateway.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "loadtests"))

import run_load  # noqa: E402  (loadtests/ is a folder of scripts, not a package)

STORES = ["1900000001", "1900000002", "1900000003"]


async def test_coupons_on_seeds_an_active_campaign_at_every_store(database_url, tmp_path):
    settings = Settings(data_dir=tmp_path)
    identity = load_or_create_identity(None, tmp_path)
    await run_load.seed(database_url, settings, identity, STORES, tmp_path / "client")
    assert await run_load.seed_campaigns(database_url, settings, identity, STORES) == len(STORES)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT sub_mchid, funder, state, budget_count, per_shopper_max "
                                "FROM coupon_campaigns ORDER BY sub_mchid")
    finally:
        await conn.close()
    assert [r["sub_mchid"] for r in rows] == STORES
    assert [r["funder"] for r in rows] == ["mall", "store", "mall"]
    assert all(r["state"] == "active" and r["budget_count"] == run_load.CAMPAIGN_BUDGET_COUNT
               and r["per_shopper_max"] == run_load.CAMPAIGN_PER_SHOPPER_MAX for r in rows)

    result = run_load.RunResult(users=1, seconds=1, out_dir=str(tmp_path), coupons=run_load.COUPONS_ON)
    await run_load.read_delivery(result, database_url)  # nothing paid yet: no delay figures
    assert result.outbox_delay_ms == {} and result.coupons_issued == 0 and result.coupon_decisions == {}


def _run(coupons: str, e2e_p99: float, outbox_p99: float) -> run_load.RunResult:
    result = run_load.RunResult(users=8, seconds=30, out_dir="-", coupons=coupons)
    result.steps = [{"name": run_load.STEP_END_TO_END, "count": 10, "failures": 0, "p50_ms": 10.0, "p95_ms": 20.0,
                     "p99_ms": e2e_p99, "max_ms": e2e_p99}]
    result.outbox_delay_ms = {"count": 10, "p50": 5.0, "p95": 9.0, "p99": outbox_p99, "max": outbox_p99}
    return result


def test_comparison_reports_the_p99_added_per_interleaved_pair(capsys):
    run_load.print_coupon_comparison([_run("off", 40, 30), _run("on", 70, 45), _run("off", 50, 35),
                                      _run("on", 60, 55)])
    out = capsys.readouterr().out
    assert "payment end-to-end +30, +10 ms (median +20)" in out
    assert "outbox +15, +20 ms (median +18)" in out  # median of 15 and 20 is 17.5, printed rounded


def test_no_coupon_runs_no_coupon_comparison(capsys):
    run_load.print_coupon_comparison([_run("off", 40, 30)])
    assert capsys.readouterr().out == ""
