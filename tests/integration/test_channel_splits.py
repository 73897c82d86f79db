"""Profit sharing end to end: the real WeChatPayChannel against the emulator over loopback.

Receivers, splits (and WeChat's rules for them), the unfreeze, split returns, the
automatic unfreeze under a test-controlled clock, and the 分账动账通知 opened by
`parse_notification`. Each test checks what a caller sees -- states, WeChat codes,
balances at the channel -- and ends with the emulator's money still all accounted for.

`World` here is shared with test_channel_refunds.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
from aiohttp import web

from gateway.channel import (
    ChannelError,
    ChannelNotificationRejected,
    ChannelOrderRequest,
    ChannelReceiver,
    ChannelReceiverType,
    ChannelSplitNotice,
    ChannelSplitNoticeKind,
    ChannelSplitOrder,
    ChannelSplitReceiver,
    ChannelSplitRequest,
    ChannelSplitResult,
    ChannelSplitReturnRequest,
    ChannelSplitReturnResult,
    ChannelSplitState,
    SplitNotReady,
)
from gateway.channel.client import WeChatPayChannel
from gateway.channel.transport import SignedTransport
from emulator import EmulatorConfig, create_emulator_app
from emulator import keys as emulator_keys
from tests.support import wait_until

SP_MCHID = "1900000100"
SP_APPID = "wx8888888888888888"
STORE = "1900000201"
BRAND = "1900000301"  # a brand headquarters' merchant id
GUIDE = "o-guide-openid-0001"
WAIT_S = 5.0

MERCHANT = ChannelReceiverType.MERCHANT_ID
PERSON = ChannelReceiverType.PERSONAL_OPENID


class Clock:
    """The one clock the emulator and the channel share, so a test can jump days ahead."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Receiver:
    """The gateway's notify endpoint: keeps what arrives, answers 204."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    async def wait_for(self, count: int) -> None:
        await eventually(lambda: len(self.received) >= count, f"{count} notifications")


async def eventually(predicate, what: str):
    """Poll a sync or async predicate until truthy, at most WAIT_S."""
    return await wait_until(predicate, timeout_s=WAIT_S, step_s=0.01, what=what)


@dataclasses.dataclass
class World:
    emulator: object
    channel: WeChatPayChannel
    session: aiohttp.ClientSession
    clock: Clock
    receiver: Receiver
    notify_url: str
    counter: int = 0

    async def paid_order(self, total_fen: int = 10_000, *, profit_sharing: bool = True,
                         sub_mchid: str = STORE) -> tuple[str, str]:
        """A paid order; returns (out_trade_no, transaction_id)."""
        self.counter += 1
        out_trade_no = f"MALL{self.counter:010d}"
        await self.channel.create_jsapi_order(ChannelOrderRequest(
            sp_appid=SP_APPID, sp_mchid=SP_MCHID, sub_mchid=sub_mchid, sub_appid=None,
            description="Store A - coat", out_trade_no=out_trade_no, total_fen=total_fen, currency="CNY",
            payer_sp_openid="o-payer", payer_sub_openid=None, notify_url=self.notify_url,
            profit_sharing=profit_sharing, time_expire=None, attach=None,
        ))
        paid = await self.sandbox("POST", "/sandbox/transactions/pay",
                                  {"sub_mchid": sub_mchid, "out_trade_no": out_trade_no})
        return out_trade_no, paid["transaction_id"]

    async def add_receivers(self, sub_mchid: str = STORE) -> None:
        await self.channel.add_receiver(ChannelReceiver(
            sub_mchid=sub_mchid, appid=SP_APPID, sub_appid=None, type=MERCHANT, account=SP_MCHID,
            name="商场管理有限公司", relation_type="SERVICE_PROVIDER"))
        await self.channel.add_receiver(ChannelReceiver(
            sub_mchid=sub_mchid, appid=SP_APPID, sub_appid=None, type=MERCHANT, account=BRAND,
            name="品牌总部有限公司", relation_type="HEADQUARTER"))
        await self.channel.add_receiver(ChannelReceiver(
            sub_mchid=sub_mchid, appid=SP_APPID, sub_appid=None, type=PERSON, account=GUIDE,
            name=None, relation_type="STAFF"))

    async def split(self, transaction_id: str, out_order_no: str, *lines: tuple[ChannelReceiverType, str, int],
                    unfreeze_unsplit: bool = False, sub_mchid: str = STORE) -> ChannelSplitOrder:
        return await self.channel.request_split(split_request(transaction_id, out_order_no, *lines,
                                                              unfreeze_unsplit=unfreeze_unsplit, sub_mchid=sub_mchid))

    async def finished(self, transaction_id: str, out_order_no: str) -> ChannelSplitOrder:
        async def done():
            order = await self.channel.query_split(STORE, transaction_id, out_order_no)
            return order if order and order.state is ChannelSplitState.FINISHED else None
        return await eventually(done, f"split {out_order_no} FINISHED")

    async def sandbox(self, method: str, path: str, payload: dict | None = None) -> dict:
        async with self.session.request(method, self.emulator.make_url(path), json=payload) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def store_funds(self, sub_mchid: str = STORE) -> tuple[int, int]:
        """(available_fen, frozen_fen) of a store at the channel."""
        funds = await self.sandbox("GET", f"/sandbox/merchants/{sub_mchid}/funds")
        return funds["available_fen"], funds["frozen_fen"]

    async def received_fen(self, receiver_type: ChannelReceiverType, account: str) -> int:
        return (await self.sandbox("GET", f"/sandbox/receivers/{receiver_type.value}/{account}/funds"))["received_fen"]

    def assert_money_accounted_for(self) -> None:
        self.emulator.app[emulator_keys.FUNDS].check_balanced()


def split_request(transaction_id: str, out_order_no: str, *lines: tuple[ChannelReceiverType, str, int],
                  unfreeze_unsplit: bool = False, sub_mchid: str = STORE) -> ChannelSplitRequest:
    return ChannelSplitRequest(
        sub_mchid=sub_mchid, appid=SP_APPID, sub_appid=None, transaction_id=transaction_id,
        out_order_no=out_order_no, unfreeze_unsplit=unfreeze_unsplit,
        receivers=tuple(ChannelSplitReceiver(type=t, account=a, amount_fen=fen, description=f"share to {a}")
                        for t, a, fen in lines),
    )


@pytest.fixture
def start_world(aiohttp_server, session, credentials):
    async def start(**knobs) -> World:
        clock, receiver = Clock(), Receiver()
        receiver_app = web.Application()
        receiver_app.router.add_post("/channel/wechatpay/notify", receiver.handle)
        notify_url = str((await aiohttp_server(receiver_app)).make_url("/channel/wechatpay/notify"))
        knobs = {"split_after_payment_s": 0, "split_finish_delay_ms": 0, "refund_finish_delay_ms": 0,
                 "notify_delay_ms": 0, "retry_time_scale": 0.001, "rng": random.Random(5),
                 "profitsharing_notify_url": notify_url, **knobs}
        emulator = await aiohttp_server(create_emulator_app(EmulatorConfig(credentials=credentials[1], **knobs),
                                                            clock=clock))
        channel = WeChatPayChannel(SignedTransport(credentials[0], str(emulator.make_url("")), session, 5.0, clock))
        return World(emulator, channel, session, clock, receiver, notify_url)

    return start


async def test_split_finishes_pays_receivers_and_unfreezes_the_rest(start_world):
    w = await start_world()
    await w.add_receivers()
    _, transaction_id = await w.paid_order(10_000)
    assert await w.channel.unsplit_amount(transaction_id) == 9_940  # 10000 less the 60 fen fee
    accepted = await w.split(transaction_id, "SPLIT0001", (MERCHANT, SP_MCHID, 1_000), (PERSON, GUIDE, 500),
                             unfreeze_unsplit=True)
    assert accepted.state is ChannelSplitState.PROCESSING and accepted.order_id
    assert [(r.account, r.amount_fen, r.result, r.finished_at) for r in accepted.receivers] == [
        (SP_MCHID, 1_000, ChannelSplitResult.PENDING, None), (GUIDE, 500, ChannelSplitResult.PENDING, None)]

    done = await w.finished(transaction_id, "SPLIT0001")
    assert done.order_id == accepted.order_id
    assert {r.result for r in done.receivers} == {ChannelSplitResult.SUCCESS}
    assert all(r.finished_at is not None and r.detail_id for r in done.receivers)
    assert await w.channel.unsplit_amount(transaction_id) == 0
    assert await w.store_funds() == (9_940 - 1_500, 0)
    assert (await w.received_fen(MERCHANT, SP_MCHID), await w.received_fen(PERSON, GUIDE)) == (1_000, 500)
    with pytest.raises(ChannelError) as closed:
        await w.split(transaction_id, "SPLIT0002", (MERCHANT, SP_MCHID, 1))
    assert (closed.value.code, closed.value.http_status) == ("NOT_ENOUGH", 403)
    w.assert_money_accounted_for()


async def test_split_notice_reaches_the_mall_per_merchant_receiver_and_parses(start_world, credentials):
    w = await start_world()
    await w.add_receivers()
    _, transaction_id = await w.paid_order(10_000)
    await w.split(transaction_id, "SPLIT0001", (MERCHANT, SP_MCHID, 700), (PERSON, GUIDE, 300))
    await w.finished(transaction_id, "SPLIT0001")
    await w.receiver.wait_for(2)  # the payment notice and one 分账动账通知 (the person gets none)
    await asyncio.sleep(0.05)
    notices = [w.channel.parse_notification(h, b) for h, b in w.receiver.received]
    splits = [n for n in notices if isinstance(n, ChannelSplitNotice)]
    assert len(notices) == 2 and len(splits) == 1
    notice = splits[0]
    assert (notice.kind, notice.sub_mchid, notice.transaction_id, notice.out_order_no) == (
        ChannelSplitNoticeKind.SPLIT, STORE, transaction_id, "SPLIT0001")
    assert (notice.receiver_type, notice.receiver_account, notice.amount_fen) == (MERCHANT, SP_MCHID, 700)
    assert notice.event_id.startswith("EV-") and abs(notice.success_at - w.clock()) < timedelta(seconds=2)
    headers, body = next((h, b) for h, b in w.receiver.received if b'"PROFITSHARING.SUCCESS"' in b)
    other_mall = WeChatPayChannel(SignedTransport(dataclasses.replace(credentials[0], sp_mchid="1900000999"),
                                                  str(w.emulator.make_url("")), w.session, 5.0, w.clock))
    with pytest.raises(ChannelNotificationRejected):
        other_mall.parse_notification(headers, body)
    with pytest.raises(ChannelNotificationRejected):  # a payment-only caller does not take it either
        w.channel.parse_payment_notification(headers, body)


async def test_split_too_soon_after_payment_is_refused_distinguishably_then_allowed(start_world):
    w = await start_world(split_after_payment_s=60)
    await w.add_receivers()
    _, transaction_id = await w.paid_order()
    for ask in (lambda: w.split(transaction_id, "SPLIT0001", (MERCHANT, SP_MCHID, 100)),
                lambda: w.channel.unfreeze(STORE, transaction_id, "UNFREEZE01", "release")):
        with pytest.raises(ChannelError) as early:
            await ask()
        assert isinstance(early.value, SplitNotReady)
        assert (early.value.http_status, early.value.retryable) == (400, False)
    assert await w.channel.query_split(STORE, transaction_id, "SPLIT0001") is None  # nothing was kept
    w.clock.advance(seconds=60)
    assert (await w.split(transaction_id, "SPLIT0001", (MERCHANT, SP_MCHID, 100))).state is ChannelSplitState.PROCESSING


async def test_cap_is_floor_of_total_times_max_ratio_summed_over_splits(start_world):
    w = await start_world()
    await w.add_receivers()
    assert await w.channel.max_ratio(STORE) == 3000
    _, transaction_id = await w.paid_order(9_999)  # cap = floor(9999 * 3000 / 10000) = 2999
    await w.split(transaction_id, "SPLIT0001", (MERCHANT, SP_MCHID, 2_000))
    with pytest.raises(ChannelError) as over:
        await w.split(transaction_id, "SPLIT0002", (MERCHANT, BRAND, 1_000))
    assert (over.value.code, over.value.http_status, over.value.retryable) == ("RULE_LIMIT", 403, False)
    await w.split(transaction_id, "SPLIT0003", (MERCHANT, BRAND, 999))  # exactly at the cap
    # Sending money to the store itself is not a split away from it, so it is not capped.
    await w.channel.add_receiver(ChannelReceiver(STORE, SP_APPID, None, MERCHANT, STORE, "A店", "STORE"))
    await w.split(transaction_id, "SPLIT0004", (MERCHANT, STORE, 4_000))
    w.assert_money_accounted_for()


async def test_franchise_store_with_a_higher_max_ratio_may_split_more(start_world):
    w = await start_world()
    await w.add_receivers()
    await w.sandbox("POST", "/sandbox/merchant-configs", {"sub_mchid": STORE, "max_ratio": 10_000})
    assert await w.channel.max_ratio(STORE) == 10_000
    _, transaction_id = await w.paid_order(10_000)
    await w.split(transaction_id, "SPLIT0001", (MERCHANT, BRAND, 7_000), (MERCHANT, SP_MCHID, 2_000))
    with pytest.raises(ChannelError) as short:
        await w.split(transaction_id, "SPLIT0002", (MERCHANT, BRAND, 1_000))  # 940 left after the fee
    assert (short.value.code, short.value.http_status) == ("NOT_ENOUGH", 403)
    assert await w.channel.unsplit_amount(transaction_id) == 940


async def test_receiver_not_added_and_deleted_receivers_are_refused(start_world):
    w = await start_world()
    _, transaction_id = await w.paid_order()
    with pytest.raises(ChannelError) as unknown:
        await w.split(transaction_id, "SPLIT0001", (MERCHANT, BRAND, 100))
    assert (unknown.value.code, unknown.value.http_status) == ("PARAM_ERROR", 400)
    await w.add_receivers()
    await w.split(transaction_id, "SPLIT0001", (MERCHANT, BRAND, 100))
    await w.channel.delete_receiver(STORE, SP_APPID, MERCHANT, BRAND)
    with pytest.raises(ChannelError) as deleted:
        await w.split(transaction_id, "SPLIT0002", (MERCHANT, BRAND, 100))
    assert deleted.value.code == "PARAM_ERROR"
    await w.add_receivers(sub_mchid="1900000209")  # another store's receivers do not count
    _, other = await w.paid_order(sub_mchid="1900000202")
    with pytest.raises(ChannelError):
        await w.split(other, "SPLIT0003", (MERCHANT, SP_MCHID, 100), sub_mchid="1900000202")


async def test_at_most_50_receivers_per_request_and_50_requests_per_order(start_world):
    w = await start_world(split_finish_delay_ms=10_000)  # stay PROCESSING: only the count matters
    await w.add_receivers()
    _, transaction_id = await w.paid_order(1_000_000)
    fifty_one = split_request(transaction_id, "SPLIT_WIDE", *[(PERSON, f"o-{i}", 1) for i in range(51)])
    with pytest.raises(ChannelError) as wide:
        await _post_split_raw(w, fifty_one)
    assert wide.value.code == "PARAM_ERROR"
    for i in range(50):
        await w.split(transaction_id, f"SPLIT{i:04d}", (MERCHANT, SP_MCHID, 1))
    with pytest.raises(ChannelError) as many:
        await w.split(transaction_id, "SPLIT0050", (MERCHANT, SP_MCHID, 1))
    assert (many.value.code, many.value.http_status) == ("INVALID_REQUEST", 400)
    assert await w.channel.unsplit_amount(transaction_id) == 1_000_000 - 6_000 - 50


async def _post_split_raw(w: World, request: ChannelSplitRequest):
    """The client refuses to build a 51-receiver split (an assert), so send WeChat's body by hand."""
    from gateway.channel import transformers_splits as tf_splits

    body = tf_splits.split_order_body(dataclasses.replace(request, receivers=request.receivers[:50]), str)
    body["receivers"].append({**body["receivers"][0], "account": "o-50"})
    return await w.channel._http.call("POST", "/v3/profitsharing/orders", body)


async def test_same_out_order_no_same_answer_changed_body_refused(start_world):
    w = await start_world(split_finish_delay_ms=10_000)
    await w.add_receivers()
    _, transaction_id = await w.paid_order()
    first = await w.split(transaction_id, "SPLIT0001", (MERCHANT, SP_MCHID, 300))
    assert await w.split(transaction_id, "SPLIT0001", (MERCHANT, SP_MCHID, 300)) == first
    with pytest.raises(ChannelError) as changed:
        await w.split(transaction_id, "SPLIT0001", (MERCHANT, SP_MCHID, 301))
    assert (changed.value.code, changed.value.http_status) == ("INVALID_REQUEST", 400)
    assert await w.channel.unsplit_amount(transaction_id) == 9_940 - 300  # one effect only


async def test_unfreeze_needs_its_own_out_order_no_and_releases_everything_left(start_world):
    w = await start_world()
    await w.add_receivers()
    _, transaction_id = await w.paid_order()
    await w.split(transaction_id, "SPLIT0001", (MERCHANT, SP_MCHID, 1_000))
    with pytest.raises(ChannelError) as reused:
        await w.channel.unfreeze(STORE, transaction_id, "SPLIT0001", "release the rest")
    assert (reused.value.code, reused.value.http_status) == ("INVALID_REQUEST", 400)
    unfreeze = await w.channel.unfreeze(STORE, transaction_id, "UNFREEZE01", "release the rest")
    assert [(r.type, r.account, r.amount_fen) for r in unfreeze.receivers] == [(MERCHANT, STORE, 8_940)]
    again = await w.channel.unfreeze(STORE, transaction_id, "UNFREEZE01", "release the rest")
    assert (again.order_id, again.receivers[0].amount_fen) == (unfreeze.order_id, 8_940)  # the same unfreeze
    done = await w.finished(transaction_id, "UNFREEZE01")
    assert done.receivers[0].result is ChannelSplitResult.SUCCESS
    assert await w.store_funds() == (8_940, 0)
    with pytest.raises(ChannelError) as nothing_left:
        await w.channel.unfreeze(STORE, transaction_id, "UNFREEZE02", "release the rest")
    assert nothing_left.value.code == "NOT_ENOUGH"
    _, plain = await w.paid_order(profit_sharing=False)
    with pytest.raises(ChannelError) as not_shared:
        await w.split(plain, "SPLIT0009", (MERCHANT, SP_MCHID, 1))
    assert (not_shared.value.code, not_shared.value.http_status) == ("INVALID_REQUEST", 400)
    w.assert_money_accounted_for()


async def test_split_return_takes_back_from_a_merchant_receiver_only_within_what_it_got(start_world):
    w = await start_world()
    await w.add_receivers()
    _, transaction_id = await w.paid_order()
    await w.split(transaction_id, "SPLIT0001", (MERCHANT, BRAND, 1_000), (PERSON, GUIDE, 200))
    await w.finished(transaction_id, "SPLIT0001")

    def back(out_return_no: str, amount_fen: int, return_mchid: str = BRAND) -> ChannelSplitReturnRequest:
        return ChannelSplitReturnRequest(sub_mchid=STORE, out_order_no="SPLIT0001", order_id=None,
                                         out_return_no=out_return_no, return_mchid=return_mchid,
                                         amount_fen=amount_fen, description="shopper refund")

    returned = await w.channel.request_split_return(back("RETURN0001", 600))
    assert (returned.result, returned.amount_fen, returned.return_mchid) == (ChannelSplitReturnResult.SUCCESS, 600,
                                                                             BRAND)
    assert await w.channel.request_split_return(back("RETURN0001", 600)) == returned  # same out_return_no
    with pytest.raises(ChannelError) as changed:
        await w.channel.request_split_return(back("RETURN0001", 601))
    assert changed.value.code == "INVALID_REQUEST"
    with pytest.raises(ChannelError) as too_much:
        await w.channel.request_split_return(back("RETURN0002", 401))
    assert (too_much.value.code, too_much.value.http_status) == ("NOT_ENOUGH", 403)
    with pytest.raises(ChannelError) as person:
        await w.channel.request_split_return(back("RETURN0003", 100, return_mchid="1900000999"))
    assert person.value.code == "INVALID_REQUEST"
    assert await w.channel.query_split_return(STORE, "SPLIT0001", "RETURN0001") == returned
    assert await w.channel.query_split_return(STORE, "SPLIT0001", "RETURN0404") is None
    assert (await w.received_fen(MERCHANT, BRAND), (await w.store_funds())[0]) == (400, 600)
    w.assert_money_accounted_for()


async def test_split_return_window_closes_after_the_configured_days(start_world):
    w = await start_world(split_return_window_days=180, freeze_days=400)
    await w.add_receivers()
    _, transaction_id = await w.paid_order()
    await w.split(transaction_id, "SPLIT0001", (MERCHANT, BRAND, 1_000))
    await w.finished(transaction_id, "SPLIT0001")
    request = ChannelSplitReturnRequest(STORE, "SPLIT0001", None, "RETURN0001", BRAND, 100, "late refund")
    w.clock.advance(days=180, seconds=1)
    with pytest.raises(ChannelError) as late:
        await w.channel.request_split_return(request)
    assert (late.value.code, late.value.http_status) == ("INVALID_REQUEST", 400)
    assert await w.received_fen(MERCHANT, BRAND) == 1_000


async def test_channel_unfreezes_by_itself_after_freeze_days(start_world):
    w = await start_world(freeze_days=30)
    await w.add_receivers()
    _, transaction_id = await w.paid_order()
    await w.split(transaction_id, "SPLIT0001", (MERCHANT, SP_MCHID, 1_000))
    w.clock.advance(days=30, seconds=-1)
    assert await w.channel.unsplit_amount(transaction_id) == 8_940
    w.clock.advance(seconds=1)
    assert await w.channel.unsplit_amount(transaction_id) == 0
    assert await w.store_funds() == (8_940, 0)
    with pytest.raises(ChannelError) as late:
        await w.split(transaction_id, "SPLIT0002", (MERCHANT, SP_MCHID, 100))
    assert late.value.code == "NOT_ENOUGH"
    w.assert_money_accounted_for()


async def test_failure_knob_closes_lines_and_keeps_the_money_with_the_store(start_world):
    w = await start_world(split_failure_rate=1.0)
    await w.add_receivers()
    _, transaction_id = await w.paid_order()
    await w.split(transaction_id, "SPLIT0001", (MERCHANT, BRAND, 1_000))
    done = await w.finished(transaction_id, "SPLIT0001")
    assert [(r.result, r.fail_reason) for r in done.receivers] == [(ChannelSplitResult.CLOSED, "ACCOUNT_ABNORMAL")]
    assert await w.channel.unsplit_amount(transaction_id) == 9_940  # back on the order, cap room restored
    assert await w.received_fen(MERCHANT, BRAND) == 0
    w.assert_money_accounted_for()


async def test_injected_errors_reach_split_endpoints_and_change_nothing(start_world):
    w = await start_world()
    await w.add_receivers()
    _, transaction_id = await w.paid_order()
    config = w.emulator.app[emulator_keys.CONFIG]
    object.__setattr__(config, "error_rate", 1.0)  # turn the knob on the running emulator (test only)
    for ask in (lambda: w.split(transaction_id, "SPLIT0001", (MERCHANT, SP_MCHID, 100)),
                lambda: w.channel.unfreeze(STORE, transaction_id, "UNFREEZE01", "release")):
        with pytest.raises(ChannelError) as failed:
            await ask()
        assert (failed.value.code, failed.value.retryable) == ("SYSTEM_ERROR", True)
    object.__setattr__(config, "error_rate", 0.0)
    assert await w.channel.query_split(STORE, transaction_id, "SPLIT0001") is None
    assert await w.channel.unsplit_amount(transaction_id) == 9_940
