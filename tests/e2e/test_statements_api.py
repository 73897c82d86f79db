"""A store downloads its statement; finance reads the ledger at an instant."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

from ledger.money import yuan
from ledger.statements import CHINA
from tests.e2e.test_tenant_isolation import _store_with_everything
from tests.support import SignedClient, balances, register_client
from tests.support import test_key as shared_key


async def _client(mall, role: str, sub_mchid: str | None = None) -> SignedClient:
    creds = await register_client(mall.pool, mall_id=mall.settings.sp_mchid, role=role, sub_mchid=sub_mchid,
                                  name=role, private_key=shared_key(0))
    return SignedClient(mall.gateway_url, creds, mall.gateway_public_key, mall.session)


async def test_a_store_downloads_its_statement_as_json_and_csv(mall):
    store = mall.stores[0]
    data = await _store_with_everything(mall, store, "S")
    await _wait_for_refund(mall, store, data.out_refund_no)
    tenant = await _client(mall, "tenant", store)
    today = datetime.now(CHINA).date().isoformat()
    reply = await tenant.get(f"/v3/mall/statements?sub_mchid={store}&date={today}")
    assert reply.status == 200, reply.json
    statement = reply.json
    kinds = [line["type"] for line in statement["lines"]]
    assert kinds[0] == "payment" and {"split", "split_return", "refund"} <= set(kinds), kinds
    payment = statement["lines"][0]
    assert (payment["out_trade_no"], payment["transaction_id"], payment["gross"]) == (
        data.out_trade_no, data.transaction_id, 10_000)
    book = await balances(mall.pool, mall.settings.sp_mchid)
    assert statement["ties_to_ledger"] is True
    assert {a["account"]: a["closing"] for a in statement["accounts"]} == {
        a: b for a, b in book.items() if a.startswith(f"tenant:{store}:")}
    totals = statement["totals"]
    assert totals["gross"] == 10_000 - 500
    # 300 split, 100 returned, and the refund took the mall's share of it back as well.
    assert 0 < totals["commission"] < 300 - 100 and totals["commission"] == book["mall:commission"]
    assert totals["net"] == book[f"tenant:{store}:frozen"] + book[f"tenant:{store}:available"] + book[
        f"tenant:{store}:owed_by_guides"]
    assert totals["coupon_subsidy"] == 0

    as_csv = await tenant.get(f"/v3/mall/statements?sub_mchid={store}&date={today}&format=csv")
    assert as_csv.status == 200 and as_csv.headers["Content-Type"].startswith("text/csv")
    assert as_csv.body.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(as_csv.body.decode("utf-8-sig"))))
    summary = dict(zip(rows[len(statement["lines"]) + 1], rows[len(statement["lines"]) + 2]))
    assert summary["净额 net"] == "`" + yuan(totals["net"])
    assert rows[-1][0].startswith("`Ties to the ledger to the fen")

    yesterday = (datetime.now(CHINA).date() - timedelta(days=1)).isoformat()
    ranged = await tenant.get(f"/v3/mall/statements?sub_mchid={store}&date={yesterday}&to={today}")
    assert ranged.json["totals"] == totals
    finance = await _client(mall, "finance")
    assert (await finance.get(f"/v3/mall/statements?sub_mchid={store}&date={today}")).json == statement


async def test_statement_requests_are_checked(mall):
    store = mall.stores[0]
    tenant = await _client(mall, "tenant", store)
    for query, field, issue in (("date=2026-13-01", "date", "bad_format"), ("", "date", "required"),
                                ("date=2026-11-02&to=2026-11-01", "to", "to_before_date"),
                                ("date=2026-01-01&to=2026-03-01", "to", "period_too_long"),
                                ("date=2026-11-01&format=xml", "format", "unknown_format")):
        reply = await tenant.get(f"/v3/mall/statements?sub_mchid={store}&{query}")
        assert (reply.status, reply.json["detail"]) == (400, {"field": field, "issue": issue}), query
    refused = await mall.app.get(f"/v3/mall/statements?sub_mchid={store}&date=2026-11-01")
    assert (refused.status, refused.json["code"]) == (403, "NO_AUTH")


async def test_finance_reads_the_ledger_at_an_instant(mall):
    store = mall.stores[1]
    before = datetime.now(timezone.utc)
    data = await _store_with_everything(mall, store, "T")
    await _wait_for_refund(mall, store, data.out_refund_no)
    finance = await _client(mall, "finance")
    then = await finance.get(f"/v3/mall/ledger/trial-balance?at={before.isoformat().replace('+00:00', 'Z')}")
    assert then.status == 200 and then.json["balanced"]
    assert all(a["balance"] == 0 for a in then.json["accounts"])
    now = await finance.get("/v3/mall/ledger/trial-balance")
    book = await balances(mall.pool, mall.settings.sp_mchid)
    assert {a["account"]: a["balance"] for a in now.json["accounts"]} == book
    frozen = f"tenant:{store}:frozen"
    one = await finance.get(f"/v3/mall/ledger/balances?account={frozen}&account=nope")
    assert one.json["accounts"] == [{"account": frozen, "currency": "CNY", "balance": book[frozen]}]
    assert one.json["missing"] == ["nope"]
    bad = await finance.get("/v3/mall/ledger/trial-balance?at=2026-11-30T10:00:00")
    assert (bad.status, bad.json["detail"]["issue"]) == (400, "offset_required")
    missing = await finance.get("/v3/mall/ledger/balances?account=nope")
    assert missing.status == 404


async def _wait_for_refund(mall, store, out_refund_no):
    from tests.support import wait_until

    async def done():
        async with mall.pool.acquire() as conn:
            return await conn.fetchval("SELECT state = 'SUCCESS' FROM refunds WHERE sub_mchid = $1 AND out_refund_no = $2",
                                       store, out_refund_no)
    await wait_until(done, timeout_s=15, what="refund succeeded")


async def test_finance_streams_the_ledger_export(mall):
    import json

    data = await _store_with_everything(mall, mall.stores[2], "X")
    await _wait_for_refund(mall, mall.stores[2], data.out_refund_no)
    finance = await _client(mall, "finance")
    today = datetime.now(CHINA).date().isoformat()
    target = f"/v3/mall/ledger/export?from={today}&to={today}&format=jsonl"
    headers = {"Authorization": finance.authorization("GET", target, b"")}
    async with mall.session.get(mall.gateway_url + target, headers=headers) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/x-ndjson")
        count = int(resp.headers["X-Mallpay-Transfers"])
        lines = (await resp.read()).decode().splitlines()
    transfers = [json.loads(line) for line in lines]
    async with mall.pool.acquire() as conn:
        assert count == len(transfers) == await conn.fetchval("SELECT count(*) FROM transfers")
    assert sum(p["amount_fen"] for t in transfers for p in t["postings"]) == 0
    tenant = await _client(mall, "tenant", mall.stores[2])
    refused = await tenant.get(target)  # refusals are signed WeChat bodies, as always
    assert (refused.status, refused.json["code"]) == (403, "NO_AUTH")
    bad = await finance.get(f"/v3/mall/ledger/export?from={today}&to={today}&format=xlsx")
    assert (bad.status, bad.json["detail"]["issue"]) == (400, "unknown_format")
