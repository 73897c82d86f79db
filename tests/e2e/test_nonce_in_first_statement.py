"""Order creation and order queries record their request's nonce in the statement they run
first (SPEC 2.1): a replay is refused exactly as elsewhere, before any effect, including
when the copies arrive together, and a request refused before that statement still has
its nonce recorded, so its replay is refused too."""

from __future__ import annotations

import asyncio
import json

from gateway import signing
from gateway.api.middleware import NONCES
from tests.support import order_body, table_counts

CREATE = "/v3/pay/partner/transactions/jsapi"


def _query_path(mall, sub_mchid: str, out_trade_no: str) -> str:
    return (f"/v3/pay/partner/transactions/out-trade-no/{out_trade_no}"
            f"?sp_mchid={mall.settings.sp_mchid}&sub_mchid={sub_mchid}")


class BookCount:
    """Nonces the app's NonceBook recorded in statements of their own."""

    def __init__(self, mall, monkeypatch):
        self.recorded = 0
        book = mall.gateway_app[NONCES]
        record = book.record

        async def counted(pool, nonce):
            self.recorded += 1
            return await record(pool, nonce)
        monkeypatch.setattr(book, "record", counted)


async def _nonce_recorded(mall, nonce: str) -> bool:
    async with mall.pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM request_nonces WHERE client_id = $1 AND nonce = $2",
                                   mall.app.creds.mchid, nonce) == 1


def _refused_as_replay(reply) -> None:
    assert reply.status == 401, (reply.status, reply.body)
    assert reply.json == {"code": "SIGN_ERROR", "message": "nonce_str was already used",
                          "detail": {"reason": "nonce_replayed"}}


async def test_create_and_query_record_their_nonce_in_their_own_statement(mall, monkeypatch):
    counting = BookCount(mall, monkeypatch)
    store = mall.stores[0]
    body = json.dumps(order_body(mall, store, "FOLD-0001")).encode()
    header = mall.app.authorization("POST", CREATE, body)
    created = await mall.app.post(CREATE, raw=body, authorization=header)
    assert created.status == 200, created.json
    assert await _nonce_recorded(mall, signing.parse_authorization(header).nonce_str)
    target = _query_path(mall, store, "FOLD-0001")
    header = mall.app.authorization("GET", target, b"")
    queried = await mall.app.get(target, authorization=header)
    assert queried.status == 200 and queried.json["trade_state"] == "NOTPAY", queried.json
    assert await _nonce_recorded(mall, signing.parse_authorization(header).nonce_str)
    assert counting.recorded == 0
    # A route without such a statement records it before its handler, as before.
    closed = await mall.app.post("/v3/pay/partner/transactions/out-trade-no/FOLD-0001/close",
                                 {"sp_mchid": mall.settings.sp_mchid, "sub_mchid": store})
    assert closed.status == 204, closed.json
    assert counting.recorded == 1


async def test_concurrent_copies_of_one_create_make_one_order(mall):
    store = mall.stores[0]
    body = json.dumps(order_body(mall, store, "FOLD-0002")).encode()
    header = mall.app.authorization("POST", CREATE, body)
    replies = await asyncio.gather(*(mall.app.post(CREATE, raw=body, authorization=header) for _ in range(8)))
    assert sorted(r.status for r in replies) == [200] + [401] * 7
    for reply in replies:
        if reply.status == 401:
            _refused_as_replay(reply)
    async with mall.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE out_trade_no = 'FOLD-0002'") == 1


async def test_concurrent_copies_of_one_query_answer_once(mall):
    store = mall.stores[0]
    assert (await mall.app.post(CREATE, order_body(mall, store, "FOLD-0003"))).status == 200
    target = _query_path(mall, store, "FOLD-0003")
    header = mall.app.authorization("GET", target, b"")
    replies = await asyncio.gather(*(mall.app.get(target, authorization=header) for _ in range(8)))
    assert sorted(r.status for r in replies) == [200] + [401] * 7
    for reply in replies:
        if reply.status == 401:
            _refused_as_replay(reply)
    # Copies of a query for no order: one "not found", the others replays.
    target = _query_path(mall, store, "FOLD-NONE")
    header = mall.app.authorization("GET", target, b"")
    replies = await asyncio.gather(*(mall.app.get(target, authorization=header) for _ in range(4)))
    assert sorted(r.status for r in replies) == [401, 401, 401, 404]


async def test_a_request_refused_before_its_statement_is_still_a_replay_the_second_time(mall, monkeypatch):
    counting = BookCount(mall, monkeypatch)
    store = mall.stores[0]
    before = await table_counts(mall.pool)
    # (body, status, code, nonces the book records for the request and its replay)
    refusals = [
        # its body: refused before the insert, so the book records the nonce both times
        (json.dumps(order_body(mall, store, "FOLD-0004", 0)).encode(), 400, "PARAM_ERROR", 2),
        # its store: refused after the insert recorded it (and inserted no order)
        (json.dumps(order_body(mall, "1900000299", "FOLD-0005")).encode(), 403, "NO_AUTH", 0),
        # its coupon: the refusal rolls the insert back, nonce and all, so the book records it
        (json.dumps(order_body(mall, store, "FOLD-0006", 10000, mall_info={
            "coupon_id": "NOSUCHCOUPON0001", "original_total": 12000})).encode(), 400, "INVALID_REQUEST", 2),
    ]
    for body, status, code, by_book in refusals:
        recorded = counting.recorded
        header = mall.app.authorization("POST", CREATE, body)
        first = await mall.app.post(CREATE, raw=body, authorization=header)
        assert (first.status, first.json["code"]) == (status, code), first.json
        assert await _nonce_recorded(mall, signing.parse_authorization(header).nonce_str)
        _refused_as_replay(await mall.app.post(CREATE, raw=body, authorization=header))
        assert counting.recorded - recorded == by_book, code
    target = f"/v3/pay/partner/transactions/out-trade-no/FOLD-0007?sp_mchid=1900000999&sub_mchid={store}"
    header = mall.app.authorization("GET", target, b"")
    first = await mall.app.get(target, authorization=header)
    assert (first.status, first.json["detail"]["reason"]) == (403, "sp_mchid_not_yours")
    _refused_as_replay(await mall.app.get(target, authorization=header))
    assert await table_counts(mall.pool) == before
