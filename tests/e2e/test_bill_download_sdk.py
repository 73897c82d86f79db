"""The mall backend downloads the gateway's own bills with the public `wechatpayv3` SDK:
apply (signed answer, checked by the SDK), download (GZIP bytes), SHA-1 equal to the
answer's hash_value, WeChat's 27 columns; a store's credentials see only its own store."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from datetime import datetime, timedelta


from gateway.shapes import bills as shapes
from gateway.wire import CHINA_TZ
from tests.support import order_body, register_client, wait_until, wechatpay_sdk
from tests.support import test_key as shared_key


async def paid(mall, sub_mchid: str, out_trade_no: str, total_fen: int) -> None:
    created = await mall.app.post("/v3/pay/partner/transactions/jsapi",
                                  order_body(mall, sub_mchid, out_trade_no, total_fen))
    assert created.status == 200, created.json
    await mall.shopper_pays(sub_mchid, out_trade_no)

    async def applied():
        async with mall.pool.acquire() as conn:
            return await conn.fetchval("SELECT state = 'SUCCESS' FROM orders WHERE out_trade_no = $1", out_trade_no)
    await wait_until(applied, what="payment applied")


async def test_download_bill_with_the_sdk(mall):
    s1, s2 = mall.stores[0], mall.stores[1]
    await paid(mall, s1, "BILL-0001", 1_000)
    await paid(mall, s1, "BILL-0002", 2_345)
    await paid(mall, s2, "BILL-0003", 999)
    # The SDK signs with the wall clock, so the gateway runs on it; a day's bill exists from
    # 10:00 on the next day: these payments are moved two days back (China time) in our records.
    async with mall.pool.acquire() as conn:
        await conn.execute("UPDATE orders SET success_at = success_at - interval '2 days' WHERE state = 'SUCCESS'")
    yesterday = (datetime.now(CHINA_TZ) - timedelta(days=2)).date().isoformat()  # (its bill is ready)
    backend = wechatpay_sdk(mall)

    code, text = await asyncio.to_thread(backend.trade_bill, bill_date=yesterday)
    assert code == 200, text
    link = json.loads(text)
    assert link["hash_type"] == "SHA1" and link["download_url"].startswith(mall.gateway_url + "/v3/billdownload/file?")
    code, content = await asyncio.to_thread(backend.download_bill, link["download_url"])
    assert code == 200 and isinstance(content, bytes) and content[:2] == b"\x1f\x8b"  # tar_type=GZIP by default
    assert hashlib.sha1(content).hexdigest() == link["hash_value"]
    bill = shapes.parse_bill(shapes.TRADE, content)
    assert gzip.decompress(content).decode().splitlines()[0].split(",") == list(shapes.TRADE.columns)
    assert sorted((r["特约商户号"], r["商户订单号"], r["订单金额"], r["手续费"]) for r in bill.rows) == [
        (s1, "BILL-0001", 1_000, 6), (s1, "BILL-0002", 2_345, 14), (s2, "BILL-0003", 999, 6)]
    assert bill.summary["总交易单数"] == "3" and bill.summary["订单总金额"] == 4_344

    code, text = await asyncio.to_thread(backend.profitsharing_bill, bill_date=yesterday)
    assert code == 400 and json.loads(text)["code"] == "NO_STATEMENT_EXIST"  # no split that day
    today = datetime.now(CHINA_TZ).date().isoformat()
    code, text = await asyncio.to_thread(backend.trade_bill, bill_date=today)
    assert code == 400 and json.loads(text)["code"] == "STATEMENT_CREATING"

    # A store's own credentials: its own lines only; another store's bill is an empty day.
    store_creds = await register_client(mall.pool, mall_id=mall.settings.sp_mchid, role="tenant", sub_mchid=s1,
                                        name="store one", private_key=shared_key(1))
    store = wechatpay_sdk(mall, creds=store_creds)
    code, text = await asyncio.to_thread(store.trade_bill, bill_date=yesterday, tar_type="GZIP")
    assert code == 200, text
    own_link = json.loads(text)
    code, content = await asyncio.to_thread(store.download_bill, own_link["download_url"])
    assert hashlib.sha1(content).hexdigest() == own_link["hash_value"]
    assert {r["特约商户号"] for r in shapes.parse_bill(shapes.TRADE, content).rows} == {s1}
    other = await asyncio.to_thread(store.trade_bill, bill_date=yesterday, sub_mchid=s2)
    unknown = await asyncio.to_thread(store.trade_bill, bill_date=yesterday, sub_mchid="1900000999")
    assert other[0] == unknown[0] == 400 and json.loads(other[1]) == json.loads(unknown[1])
    # A download link is the applicant's alone.
    code, _ = await asyncio.to_thread(store.download_bill, link["download_url"])
    assert code == 404
