"""Refunds end to end: the real WeChatPayChannel against the emulator over loopback.

Refund and query, WeChat's rules (total must match, never more than paid, idempotent
out_refund_no), where the money comes from (the frozen order first, then the store's
available balance: money split away must be returned first), the fee given back, and the
REFUND.* notification opened by `parse_notification`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from gateway.channel import (
    ChannelError,
    ChannelNotificationRejected,
    ChannelPaymentNotice,
    ChannelRefundNotice,
    ChannelRefundRequest,
    ChannelRefundState,
    ChannelSplitReturnRequest,
    ChannelTradeState,
)
from gateway.channel.client import WeChatPayChannel
from gateway.channel.transport import SignedTransport
from tests.integration.test_channel_splits import (  # noqa: F401 -- fixtures shared with the split tests
    BRAND,
    MERCHANT,
    SP_MCHID,
    STORE,
    World,
    eventually,
    start_world,
)


def refund_request(transaction_id: str, out_refund_no: str, refund_fen: int, total_fen: int = 10_000,
                   **changes) -> ChannelRefundRequest:
    values = dict(sub_mchid=STORE, transaction_id=transaction_id, out_trade_no=None, out_refund_no=out_refund_no,
                  refund_fen=refund_fen, total_fen=total_fen, currency="CNY", reason="size does not fit",
                  notify_url=None)
    values.update(changes)
    return ChannelRefundRequest(**values)


async def succeeded(w: World, out_refund_no: str):
    async def done():
        refund = await w.channel.query_refund(STORE, out_refund_no)
        return refund if refund and refund.status is ChannelRefundState.SUCCESS else None
    return await eventually(done, f"refund {out_refund_no} SUCCESS")


async def test_refund_of_a_frozen_order_succeeds_with_fee_back_and_notifies(start_world, credentials):
    w = await start_world()
    out_trade_no, transaction_id = await w.paid_order(10_000)
    accepted = await w.channel.request_refund(refund_request(transaction_id, "REFUND0001", 3_333,
                                                             notify_url=w.notify_url))
    assert (accepted.status, accepted.refund_fen, accepted.total_fen, accepted.refund_fee_fen) == (
        ChannelRefundState.PROCESSING, 3_333, 10_000, 19)  # fee back: floor(60 * 3333 / 10000)
    assert (accepted.out_trade_no, accepted.channel, accepted.funds_account) == (out_trade_no, "ORIGINAL", "UNSETTLED")
    amounts = (accepted.payer_refund_fen, accepted.settlement_refund_fen, accepted.discount_refund_fen)
    assert amounts == (3_333, 3_333, 0)
    done = await succeeded(w, "REFUND0001")
    assert done.refund_id == accepted.refund_id and done.success_at is not None
    assert await w.channel.unsplit_amount(transaction_id) == 9_940 - (3_333 - 19)
    trade = await w.channel.query_by_transaction_id(STORE, transaction_id)
    assert trade.state is ChannelTradeState.REFUND

    await w.receiver.wait_for(2)  # the payment notice, then the refund's
    notices = [w.channel.parse_notification(h, b) for h, b in w.receiver.received]
    assert isinstance(notices[0], ChannelPaymentNotice)
    refund_notice = notices[1]
    assert isinstance(refund_notice, ChannelRefundNotice)
    assert (refund_notice.status, refund_notice.out_refund_no, refund_notice.refund_id) == (
        ChannelRefundState.SUCCESS, "REFUND0001", accepted.refund_id)
    assert (refund_notice.sub_mchid, refund_notice.transaction_id, refund_notice.out_trade_no) == (
        STORE, transaction_id, out_trade_no)
    assert (refund_notice.refund_fen, refund_notice.total_fen, refund_notice.payer_refund_fen) == (3_333, 10_000, 3_333)
    assert abs(refund_notice.success_at - w.clock()) < timedelta(seconds=2)
    other_mall = WeChatPayChannel(SignedTransport(dataclasses.replace(credentials[0], sp_mchid="1900000999"),
                                                  str(w.emulator.make_url("")), w.session, 5.0, w.clock))
    with pytest.raises(ChannelNotificationRejected):
        other_mall.parse_notification(*w.receiver.received[1])
    headers, body = w.receiver.received[1]
    with pytest.raises(ChannelNotificationRejected):
        w.channel.parse_notification(headers, body.replace(b'"summary":"', b'"summary":"x', 1))
    w.assert_money_accounted_for()


async def test_partial_refunds_give_back_the_whole_fee_in_the_end_and_never_exceed_paid(start_world):
    w = await start_world()
    _, transaction_id = await w.paid_order(10_000)
    fees = []
    for i, part in enumerate((3_333, 3_333, 3_334)):
        fees.append((await w.channel.request_refund(refund_request(transaction_id, f"REFUND{i:04d}", part)))
                    .refund_fee_fen)
    assert fees == [19, 20, 21] and sum(fees) == 60
    with pytest.raises(ChannelError) as beyond:
        await w.channel.request_refund(refund_request(transaction_id, "REFUND0009", 1))
    assert (beyond.value.code, beyond.value.http_status, beyond.value.retryable) == ("INVALID_REQUEST", 400, False)
    assert await w.store_funds() == (0, 0)
    w.assert_money_accounted_for()


async def test_refund_after_a_split_is_not_enough_until_the_split_is_returned(start_world):
    w = await start_world()
    await w.add_receivers()
    _, transaction_id = await w.paid_order(10_000)
    await w.split(transaction_id, "SPLIT0001", (MERCHANT, BRAND, 3_000))
    await w.finished(transaction_id, "SPLIT0001")
    full = refund_request(transaction_id, "REFUND0001", 10_000)
    with pytest.raises(ChannelError) as short:
        await w.channel.request_refund(full)  # needs 9940 net; 6940 frozen, nothing available
    assert (short.value.code, short.value.http_status, short.value.retryable) == ("NOT_ENOUGH", 403, False)
    assert await w.channel.query_refund(STORE, "REFUND0001") is None  # refused: nothing kept

    returned = await w.channel.request_split_return(ChannelSplitReturnRequest(
        STORE, "SPLIT0001", None, "RETURN0001", BRAND, 3_000, "shopper refund"))
    assert returned.amount_fen == 3_000
    await w.channel.request_refund(full)
    await succeeded(w, "REFUND0001")
    assert await w.store_funds() == (0, 0)
    assert await w.received_fen(MERCHANT, BRAND) == 0
    w.assert_money_accounted_for()


async def test_refund_draws_on_available_balance_when_the_order_is_short(start_world):
    w = await start_world()
    await w.add_receivers()
    await w.paid_order(5_000, profit_sharing=False)  # 4970 available
    _, transaction_id = await w.paid_order(10_000)
    await w.split(transaction_id, "SPLIT0001", (MERCHANT, SP_MCHID, 2_000), unfreeze_unsplit=False)
    refund = await w.channel.request_refund(refund_request(transaction_id, "REFUND0001", 10_000))
    assert refund.refund_fee_fen == 60
    # net 9940: 7940 from the frozen order, 2000 from the store's available money
    assert await w.store_funds() == (4_970 - 2_000, 0)
    _, other = await w.paid_order(10_000)
    with pytest.raises(ChannelError) as only_available:
        await w.channel.request_refund(refund_request(other, "REFUND0002", 5_000, funds_account="AVAILABLE"))
    assert only_available.value.code == "NOT_ENOUGH"  # 2970 available < 4970 net; the frozen order is not used


async def test_out_refund_no_is_idempotent_and_rules_refuse_without_change(start_world):
    w = await start_world(refund_finish_delay_ms=10_000)
    out_trade_no, transaction_id = await w.paid_order(10_000)
    first = await w.channel.request_refund(refund_request(transaction_id, "REFUND0001", 500))
    assert await w.channel.request_refund(refund_request(transaction_id, "REFUND0001", 500)) == first
    by_out_trade_no = refund_request(None, "REFUND0001", 500, out_trade_no=out_trade_no)
    refused = {
        "changed amount": refund_request(transaction_id, "REFUND0001", 501),
        "changed id": by_out_trade_no,  # another request under the same out_refund_no
        "total differs": refund_request(transaction_id, "REFUND0002", 500, total_fen=9_999),
    }
    for name, request in refused.items():
        with pytest.raises(ChannelError) as bad:
            await w.channel.request_refund(request)
        assert (bad.value.code, bad.value.http_status) == ("INVALID_REQUEST", 400), name
    with pytest.raises(ChannelError) as unknown:
        await w.channel.request_refund(refund_request("4200000000000000000000000000", "REFUND0003", 1))
    assert (unknown.value.code, unknown.value.http_status) == ("RESOURCE_NOT_EXISTS", 404)
    assert await w.channel.unsplit_amount(transaction_id) == 9_940 - (500 - 3)  # one refund took effect
    second = await w.channel.request_refund(dataclasses.replace(by_out_trade_no, out_refund_no="REFUND0004"))
    assert (second.transaction_id, second.status) == (transaction_id, ChannelRefundState.PROCESSING)


async def test_abnormal_refund_knob_sends_refund_abnormal(start_world):
    w = await start_world(refund_abnormal_rate=1.0)
    _, transaction_id = await w.paid_order(10_000)
    await w.channel.request_refund(refund_request(transaction_id, "REFUND0001", 100, notify_url=w.notify_url))
    await w.receiver.wait_for(2)
    notice = w.channel.parse_notification(*w.receiver.received[1])
    assert isinstance(notice, ChannelRefundNotice)
    assert (notice.status, notice.success_at) == (ChannelRefundState.ABNORMAL, None)
    assert (await w.channel.query_refund(STORE, "REFUND0001")).status is ChannelRefundState.ABNORMAL


async def test_refund_notices_follow_the_notify_knobs(start_world):
    w = await start_world(notify_duplicate_count=1)
    _, transaction_id = await w.paid_order(10_000)
    await w.channel.request_refund(refund_request(transaction_id, "REFUND0001", 100, notify_url=w.notify_url))
    await w.receiver.wait_for(4)  # payment and refund, each delivered twice
    await asyncio.sleep(0.05)
    refund_notices = [n for n in (w.channel.parse_notification(h, b) for h, b in w.receiver.received)
                      if isinstance(n, ChannelRefundNotice)]
    assert len(refund_notices) == 2 and refund_notices[0] == refund_notices[1]  # same event id: dedupe by it
    assert SP_MCHID == refund_notices[0].sp_mchid
