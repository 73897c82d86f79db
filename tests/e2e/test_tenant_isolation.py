"""A store sees only itself (SPEC 1): with its own credentials it reads its own orders,
refunds, splits and statements, and every attempt on another store's data answers exactly
as a missing resource would — same status, same body — through raw signed requests and
through the `wechatpayv3` SDK in partner mode (which sends the client's own mchid as
`sp_mchid`).

ENDPOINTS is the matrix: one line per endpoint that takes an id or lists. A new endpoint
is one more line; the tests below run every line against every way of guessing.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime

import pytest
from wechatpayv3 import WeChatPay

from ledger.statements import CHINA
from tests.support import SignedClient, pay_order, register_client, wait_until, wechatpay_sdk
from tests.support import test_key as shared_key


@dataclass(frozen=True)
class Probe:
    name: str
    target: str            # a path template over the fields of StoreData
    tenant_may_read: bool | None  # False: the role is refused for every store alike (403); None: not checked


ENDPOINTS = [
    Probe("order by out_trade_no",
          "/v3/pay/partner/transactions/out-trade-no/{out_trade_no}?sp_mchid={sp_mchid}&sub_mchid={sub_mchid}", True),
    Probe("order by transaction_id",
          "/v3/pay/partner/transactions/id/{transaction_id}?sp_mchid={sp_mchid}&sub_mchid={sub_mchid}", True),
    Probe("refund", "/v3/refund/domestic/refunds/{out_refund_no}?sub_mchid={sub_mchid}", True),
    Probe("split order", "/v3/profitsharing/orders/{out_order_no}?sub_mchid={sub_mchid}&transaction_id={transaction_id}",
          True),
    Probe("return order",
          "/v3/profitsharing/return-orders/{out_return_no}?sub_mchid={sub_mchid}&out_order_no={out_order_no}", True),
    Probe("splittable amount", "/v3/profitsharing/transactions/{transaction_id}/amounts", True),
    Probe("merchant config", "/v3/profitsharing/merchant-configs/{sub_mchid}", True),
    Probe("tenant", "/v3/mall/tenants/{sub_mchid}", True),
    Probe("high-ratio approvals", "/v3/mall/tenants/{sub_mchid}/approvals", False),
    Probe("points rule", "/v3/mall/tenants/{sub_mchid}/points-rule", True),
    Probe("a member's coupons", "/v3/mall/members/oMember{sub_mchid}/coupons", False),
    Probe("a member's points", "/v3/mall/members/oMember{sub_mchid}/points", False),
    Probe("jobs", "/v3/mall/jobs", False),
    Probe("guides", "/v3/mall/guides", False),
    Probe("statement", "/v3/mall/statements?sub_mchid={sub_mchid}&date={today}", True),
    Probe("statement as CSV", "/v3/mall/statements?sub_mchid={sub_mchid}&date={today}&to={today}&format=csv", True),
    Probe("trial balance", "/v3/mall/ledger/trial-balance", False),
    Probe("account balances", "/v3/mall/ledger/balances?account=tenant:{sub_mchid}:available", False),
    Probe("ledger export", "/v3/mall/ledger/export?from={today}&to={today}&format=csv", False),
    Probe("payouts", "/v3/mall/payouts?sub_mchid={sub_mchid}&from={today}&to={today}", True),
    Probe("coupon-subsidy payouts", "/v3/mall/coupon-subsidies/payouts?sub_mchid={sub_mchid}", True),
    Probe("points syncs", "/v3/mall/points/syncs", False),
    Probe("reconciliations", "/v3/mall/reconciliations", False),
    Probe("reconciliation of a day", "/v3/mall/reconciliations/{today}", False),
    # Bills of a day not over yet are not ready even for the store itself: only the
    # other store's answer against a missing one's is checked (None).
    Probe("trade bill", "/v3/bill/tradebill?bill_date={today}&sub_mchid={sub_mchid}", None),
    Probe("profit-sharing bill", "/v3/profitsharing/bills?bill_date={today}&sub_mchid={sub_mchid}", None),
]

# Lists a tenant may read: every item it gets back must be its own.
LISTS = [
    ("tenants", "/v3/mall/tenants?limit=100", lambda body: [item["sub_mchid"] for item in body["data"]]),
]


@dataclass(frozen=True)
class StoreData:
    sub_mchid: str
    out_trade_no: str
    transaction_id: str
    out_refund_no: str
    out_order_no: str
    out_return_no: str
    sp_mchid: str = ""

    def fill(self, template: str, sp_mchid: str) -> str:
        today = datetime.now(CHINA).date().isoformat()
        return template.format(sp_mchid=sp_mchid, today=today,
                               **{k: v for k, v in self.__dict__.items() if k != "sp_mchid"})


def ghost_of(data: StoreData, *, sub_mchid: str | None = None) -> StoreData:
    """The same shape of request naming things that do not exist."""
    return StoreData(sub_mchid=sub_mchid or data.sub_mchid, out_trade_no="GHOST-00001",
                     transaction_id="4200009999999999999999", out_refund_no="GHOST-R-0001",
                     out_order_no="GHOST-P-0001", out_return_no="GHOST-B-0001")


async def _store_with_everything(mall, sub_mchid: str, tag: str) -> StoreData:
    """A paid order of the store with a split to the mall, a split return and a refund."""
    out_trade_no, out_order_no, out_return_no, out_refund_no = (f"ISO{tag}-ORDER", f"ISO{tag}-SPLIT",
                                                                f"ISO{tag}-RETURN", f"ISO{tag}-REFUND")
    transaction_id = await pay_order(mall, sub_mchid, out_trade_no, 10_000)
    split = await mall.app.post("/v3/profitsharing/orders", {
        "sub_mchid": sub_mchid, "transaction_id": transaction_id, "out_order_no": out_order_no,
        "unfreeze_unsplit": False, "receivers": [{"type": "MERCHANT_ID", "account": mall.settings.sp_mchid,
                                                  "amount": 300, "description": "commission"}]})
    assert split.status == 200, split.json
    split_path = f"/v3/profitsharing/orders/{out_order_no}?sub_mchid={sub_mchid}&transaction_id={transaction_id}"

    async def split_finished():
        return (await mall.app.get(split_path)).json["state"] == "FINISHED"

    await wait_until(split_finished, what="split finished")
    returned = await mall.app.post("/v3/profitsharing/return-orders", {
        "sub_mchid": sub_mchid, "out_order_no": out_order_no, "out_return_no": out_return_no,
        "return_mchid": mall.settings.sp_mchid, "amount": 100, "description": "return"})
    assert returned.status == 200, returned.json
    refund = await mall.app.post("/v3/refund/domestic/refunds", {
        "sub_mchid": sub_mchid, "transaction_id": transaction_id, "out_refund_no": out_refund_no,
        "amount": {"refund": 500, "total": 10_000, "currency": "CNY"}})
    assert refund.status == 200, refund.json
    return StoreData(sub_mchid, out_trade_no, transaction_id, out_refund_no, out_order_no, out_return_no)


@pytest.fixture
async def two_stores(mall):
    own = await _store_with_everything(mall, mall.stores[0], "A")
    other = await _store_with_everything(mall, mall.stores[1], "B")
    creds = await register_client(mall.pool, mall_id=mall.settings.sp_mchid, role="tenant", sub_mchid=own.sub_mchid,
                                  name="POS A", private_key=shared_key(0))
    tenant = SignedClient(mall.gateway_url, creds, mall.gateway_public_key, mall.session)
    return mall, tenant, own, other


def _guesses(own: StoreData, other: StoreData) -> list[tuple[StoreData, StoreData]]:
    """(what the tenant asks for, the missing resource it must look like)."""
    mixed = StoreData(own.sub_mchid, other.out_trade_no, other.transaction_id, other.out_refund_no,
                      other.out_order_no, other.out_return_no)
    return [(other, ghost_of(other)),                      # the other store, named as it is
            (mixed, ghost_of(own)),                         # its ids under the tenant's own store
            (ghost_of(other, sub_mchid="1900000299"), ghost_of(other, sub_mchid="1900000298"))]


async def test_isolation_matrix_over_raw_signed_requests(two_stores):
    mall, tenant, own, other = two_stores
    for sp_mchid in (tenant.creds.mchid, mall.settings.sp_mchid):  # the SDK's way and the mall's
        for probe in ENDPOINTS:
            mine = await tenant.get(own.fill(probe.target, sp_mchid))
            if probe.tenant_may_read:
                assert mine.status == 200, (probe.name, mine.json)
            elif probe.tenant_may_read is False:
                assert (mine.status, mine.json["code"]) == (403, "NO_AUTH"), probe.name
            if probe.tenant_may_read:  # the admin sees the other store's data: the ids guessed below are real
                assert (await mall.admin.get(other.fill(probe.target, mall.settings.sp_mchid))).status == 200, probe.name
            for asked, missing in _guesses(own, other):
                if asked.fill(probe.target, sp_mchid) == own.fill(probe.target, sp_mchid):
                    continue  # an endpoint whose only id is the store: the mixed guess is its own
                theirs = await tenant.get(asked.fill(probe.target, sp_mchid))
                ghost = await tenant.get(missing.fill(probe.target, sp_mchid))
                # 404 for a missing resource; 400 NO_STATEMENT_EXIST for a bill (WeChat's empty day)
                assert theirs.status in (400, 403, 404) and theirs.status < 500, (probe.name, theirs.status)
                assert theirs.json["code"] != "PARAM_ERROR", (probe.name, theirs.json)
                assert (theirs.status, theirs.json) == (ghost.status, ghost.json), probe.name
    for name, target, owners in LISTS:
        listed = await tenant.get(target)
        assert listed.status == 200 and owners(listed.json) == [own.sub_mchid], name


def _sdk_calls(sdk: WeChatPay, data: StoreData) -> dict:
    """The SDK's own methods for the store's reads (partner mode fills sp_mchid itself)."""
    return {
        "query by out_trade_no": lambda: sdk.query(out_trade_no=data.out_trade_no, sub_mchid=data.sub_mchid),
        "query by transaction_id": lambda: sdk.query(transaction_id=data.transaction_id, sub_mchid=data.sub_mchid),
        "query_refund": lambda: sdk.query_refund(data.out_refund_no, sub_mchid=data.sub_mchid),
        "profitsharing_order_query": lambda: sdk.profitsharing_order_query(
            data.transaction_id, data.out_order_no, sub_mchid=data.sub_mchid),
        "profitsharing_return_query": lambda: sdk.profitsharing_return_query(
            data.out_order_no, data.out_return_no, sub_mchid=data.sub_mchid),
        "profitsharing_amount_query": lambda: sdk.profitsharing_amount_query(data.transaction_id),
        "profitsharing_config_query": lambda: sdk.profitsharing_config_query(data.sub_mchid),
    }


async def test_isolation_matrix_through_the_wechatpayv3_sdk(two_stores):
    mall, tenant, own, other = two_stores
    sdk = wechatpay_sdk(mall, creds=tenant.creds)
    for name, call in _sdk_calls(sdk, own).items():
        code, text = await asyncio.to_thread(call)
        assert code == 200, (name, text)  # verified by the SDK: a signed answer of the store's own data
    for asked, missing in _guesses(own, other):
        asked_calls, missing_calls = _sdk_calls(sdk, asked), _sdk_calls(sdk, missing)
        for name in asked_calls:
            if name == "profitsharing_config_query" and asked.sub_mchid == own.sub_mchid:
                continue
            theirs = await asyncio.to_thread(asked_calls[name])
            ghost = await asyncio.to_thread(missing_calls[name])
            assert theirs[0] in (403, 404), (name, theirs)
            assert (theirs[0], json.loads(theirs[1])) == (ghost[0], json.loads(ghost[1])), name
    # Every line of the matrix, through the SDK's signed request as it builds it.
    for probe in ENDPOINTS:
        code, text = await asyncio.to_thread(sdk._core.request, own.fill(probe.target, tenant.creds.mchid))
        if probe.tenant_may_read is not None:
            assert code == (200 if probe.tenant_may_read else 403), (probe.name, text)
        for asked, missing in _guesses(own, other):
            if asked.fill(probe.target, "") == own.fill(probe.target, ""):
                continue
            theirs = await asyncio.to_thread(sdk._core.request, asked.fill(probe.target, tenant.creds.mchid))
            ghost = await asyncio.to_thread(sdk._core.request, missing.fill(probe.target, tenant.creds.mchid))
            assert (theirs[0], json.loads(theirs[1])) == (ghost[0], json.loads(ghost[1])), probe.name


async def test_a_client_naming_someone_elses_sp_mchid_is_refused(two_stores):
    mall, tenant, own, _ = two_stores
    reply = await tenant.get(own.fill(ENDPOINTS[0].target, "1900000500"))
    assert (reply.status, reply.json["detail"]["reason"]) == (403, "sp_mchid_not_yours")
