"""The gateway's client for WeChat Pay's service-provider API (or the emulator).

One async method per flow: orders, profit sharing (splits, unfreeze, split returns,
receivers, ratios) and refunds; plus `parse_notification` for what WeChat posts back.
Signing, answer verification and notification opening live in `transport`; WeChat's JSON
in `transformers*`. Failures are `ChannelError` (with `retryable`): a query for something
WeChat does not know answers None instead.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Coroutine, Mapping
from datetime import date
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from gateway import signing
from gateway.channel import (
    ChannelError,
    ChannelNotFound,
    ChannelOrderRequest,
    ChannelPaymentNotice,
    ChannelPointsNotice,
    ChannelReceiver,
    ChannelReceiverType,
    ChannelRefund,
    ChannelRefundNotice,
    ChannelRefundRequest,
    ChannelSplitNotice,
    ChannelSplitNoticeKind,
    ChannelSplitOrder,
    ChannelSplitRequest,
    ChannelSplitReturn,
    ChannelSplitReturnRequest,
    ChannelTrade,
    ChannelTradeState,
)
from gateway.channel import bills as tf_bills
from gateway.channel import transformers as tf
from gateway.channel import transformers_refunds as tf_refunds
from gateway.channel import transformers_splits as tf_splits
from gateway.channel.transport import SignedTransport, rejected
from gateway.shapes import bills as bill_shapes

BILL_BYTES_MAX = 256 * 1024 * 1024  # one bill file as downloaded (GZIP or not)

T = TypeVar("T")
ChannelNotice = ChannelPaymentNotice | ChannelRefundNotice | ChannelSplitNotice
_SPLIT_EVENTS = {kind.value: kind for kind in ChannelSplitNoticeKind}


class WeChatPayChannel:
    """WeChat Pay's partner APIs, per flow, over a signed transport (who we are, where the
    channel is, how long to wait): `WeChatPayChannel(SignedTransport(credentials, url, ...))`."""

    def __init__(self, transport: SignedTransport):
        self._credentials = transport.credentials
        self._clock = transport.now
        self._http = transport

    async def read_sandbox_clock(self) -> None:
        """The emulator only: follow its sandbox clock (gateway.sandbox_clock)."""
        await self._http.read_sandbox_clock()

    # -- orders ------------------------------------------------------------------------

    async def create_jsapi_order(self, req: ChannelOrderRequest) -> str:
        """Open a mini-program order; returns WeChat's prepay_id."""
        assert req.sp_mchid == self._credentials.sp_mchid, "orders are opened as the mall"
        _, data = await self._http.call("POST", "/v3/pay/partner/transactions/jsapi", tf.jsapi_order_body(req))
        return self._http.read(tf.prepay_id_from, data)

    async def query_by_out_trade_no(self, sub_mchid: str, out_trade_no: str) -> ChannelTrade | None:
        """The order's state at the channel, or None when WeChat does not know it."""
        path = f"/v3/pay/partner/transactions/out-trade-no/{_segment(out_trade_no)}"
        return await self._query_trade(path, sub_mchid)

    async def query_by_transaction_id(self, sub_mchid: str, transaction_id: str) -> ChannelTrade | None:
        path = f"/v3/pay/partner/transactions/id/{_segment(transaction_id)}"
        return await self._query_trade(path, sub_mchid)

    async def close_order(self, sub_mchid: str, out_trade_no: str) -> None:
        """Close an unpaid order. A paid one raises ChannelError(code='ORDERPAID'); one the
        channel never opened raises ChannelNotFound."""
        path = f"/v3/pay/partner/transactions/out-trade-no/{_segment(out_trade_no)}/close"
        await self._http.call("POST", path, {"sp_mchid": self._credentials.sp_mchid, "sub_mchid": sub_mchid})

    def jsapi_pay_params(self, appid: str, prepay_id: str) -> dict[str, str]:
        """The object the mini-program passes to `wx.requestPayment`, signed by the mall.

        `appid` is the app the payer's openid belongs to (sub_appid for a sub_openid payer,
        sp_appid otherwise). Names are WeChat's because they go to WeChat's client as is.
        """
        timestamp = str(int(self._clock().timestamp()))
        nonce = signing.new_nonce()
        package = f"prepay_id={prepay_id}"
        message = f"{appid}\n{timestamp}\n{nonce}\n{package}\n".encode()
        pay_sign = signing.sign(self._credentials.merchant_private_key.reveal(), message)
        return {
            "appId": appid, "timeStamp": timestamp, "nonceStr": nonce,
            "package": package, "signType": "RSA", "paySign": pay_sign,
        }

    # -- profit sharing ------------------------------------------------------------------

    async def add_receiver(self, receiver: ChannelReceiver) -> None:
        """Allow splits of `receiver.sub_mchid`'s orders to this receiver (idempotent)."""
        body = tf_splits.receiver_add_body(receiver, self._http.encrypt)
        await self._http.call("POST", "/v3/profitsharing/receivers/add", body)

    async def delete_receiver(self, sub_mchid: str, appid: str, receiver_type: ChannelReceiverType, account: str,
                              *, sub_appid: str | None = None) -> None:
        body = tf_splits.receiver_delete_body(sub_mchid, appid, sub_appid, receiver_type, account)
        await self._http.call("POST", "/v3/profitsharing/receivers/delete", body)

    async def max_ratio(self, sub_mchid: str) -> int:
        """The share of each order that may be split away from the store, in basis points."""
        _, data = await self._http.call("GET", f"/v3/profitsharing/merchant-configs/{_segment(sub_mchid)}", None)
        return self._http.read(lambda d: tf_splits.max_ratio_bps_from(d, sub_mchid), data)

    async def request_split(self, req: ChannelSplitRequest) -> ChannelSplitOrder:
        """Ask for a split; WeChat answers PROCESSING and finishes it later (query or notice).

        Too soon after payment raises SplitNotReady.
        """
        _, data = await self._http.call("POST", "/v3/profitsharing/orders",
                                        tf_splits.split_order_body(req, self._http.encrypt))
        return self._http.read(tf_splits.split_order_from, data)

    async def query_split(self, sub_mchid: str, transaction_id: str, out_order_no: str) -> ChannelSplitOrder | None:
        """A split order or unfreeze by its out_order_no, or None when WeChat does not know it."""
        query = urlencode({"sub_mchid": sub_mchid, "transaction_id": transaction_id})
        target = f"/v3/profitsharing/orders/{_segment(out_order_no)}?{query}"
        return await self._absent_on_404(self._get(target, tf_splits.split_order_from))

    async def unfreeze(self, sub_mchid: str, transaction_id: str, out_order_no: str,
                       description: str) -> ChannelSplitOrder:
        """Release all that is still unsplit to the store. `out_order_no` must be new: one
        already used by a split is refused. Nothing left to release is 403 NOT_ENOUGH."""
        body = tf_splits.unfreeze_body(sub_mchid, transaction_id, out_order_no, description)
        _, data = await self._http.call("POST", "/v3/profitsharing/orders/unfreeze", body)
        return self._http.read(tf_splits.split_order_from, data)

    async def unsplit_amount(self, transaction_id: str) -> int:
        """Fen of the order still frozen and splittable."""
        target = f"/v3/profitsharing/transactions/{_segment(transaction_id)}/amounts"
        return await self._get(target, lambda d: tf_splits.unsplit_fen_from(d, transaction_id))

    async def request_split_return(self, req: ChannelSplitReturnRequest) -> ChannelSplitReturn:
        """Take money back from a MERCHANT_ID receiver of a split (before refunding it)."""
        _, data = await self._http.call("POST", "/v3/profitsharing/return-orders", tf_splits.split_return_body(req))
        return self._http.read(tf_splits.split_return_from, data)

    async def query_split_return(self, sub_mchid: str, out_order_no: str,
                                 out_return_no: str) -> ChannelSplitReturn | None:
        query = urlencode({"sub_mchid": sub_mchid, "out_order_no": out_order_no})
        target = f"/v3/profitsharing/return-orders/{_segment(out_return_no)}?{query}"
        return await self._absent_on_404(self._get(target, tf_splits.split_return_from))

    # -- refunds -------------------------------------------------------------------------

    async def request_refund(self, req: ChannelRefundRequest) -> ChannelRefund:
        """Ask for a refund; WeChat answers PROCESSING and reports the end by REFUND.* notice.

        Money split away and not returned is not there: 403 NOT_ENOUGH (not retryable).
        """
        _, data = await self._http.call("POST", "/v3/refund/domestic/refunds", tf_refunds.refund_body(req))
        return self._http.read(tf_refunds.refund_from, data)

    async def query_refund(self, sub_mchid: str, out_refund_no: str) -> ChannelRefund | None:
        target = f"/v3/refund/domestic/refunds/{_segment(out_refund_no)}?{urlencode({'sub_mchid': sub_mchid})}"
        return await self._absent_on_404(self._get(target, tf_refunds.refund_from))

    # -- bills -----------------------------------------------------------------------------

    async def bill_file(self, bill: tf_bills.ChannelBill, bill_date: date, sub_mchid: str | None) -> bytes | None:
        """The bill file's bytes (possibly GZIP; the parser opens it), its SHA-1 checked and,
        for the fund-flow bill, decrypted. None when the channel has no bill that day
        (NO_STATEMENT_EXIST: nothing happened). A bill not generated yet raises BillNotReady
        (retryable)."""
        query = {"bill_date": bill_date.isoformat()}
        if sub_mchid is not None:
            query["sub_mchid"] = sub_mchid
        if bill is tf_bills.FUNDFLOW_BILL:
            assert sub_mchid is not None, "a fund-flow bill is one store's"
            query.update(account_type="BASIC", algorithm="AEAD_AES_256_GCM")
        try:
            _, data = await self._http.call("GET", f"{bill.path}?{urlencode(query)}", None)
        except ChannelError as exc:
            if exc.code == tf_bills.NO_STATEMENT:
                return None
            raise
        if bill is tf_bills.FUNDFLOW_BILL:
            links = self._http.read(tf_bills.fundflow_links_from, data)
            return b"".join([await self._fetch_bill(link) for link in links])
        return await self._fetch_bill(self._http.read(tf_bills.link_from, data))

    async def _fetch_bill(self, link: tf_bills.BillLink) -> bytes:
        data = await self._http.download(link.download_url, BILL_BYTES_MAX)
        if link.encrypt_key is not None:
            data = self._open_sealed_bill(link, data)
        if hashlib.sha1(data).hexdigest() != link.sha1_hex:
            raise ChannelError(tf.CODE_BAD_RESPONSE, "bill file does not match its SHA-1", retryable=True)
        return data

    def _open_sealed_bill(self, link: tf_bills.BillLink, sealed: bytes) -> bytes:
        key = signing.oaep_decrypt(self._credentials.merchant_private_key.reveal(), link.encrypt_key or "")
        plain = None
        if key is not None and len(key.encode()) == signing.APIV3_KEY_BYTES:
            plain = signing.aes_gcm_decrypt(key.encode(), base64.b64encode(sealed).decode(), link.nonce or "", "")
        if plain is None:
            raise ChannelError(tf.CODE_BAD_RESPONSE, "fund-flow bill does not decrypt", retryable=True)
        return plain

    async def trade_lines(self, bill_date: date, sub_mchid: str | None = None) -> list[tf_bills.ChannelTradeLine]:
        return await self._bill_lines(tf_bills.TRADE_BILL, bill_date, sub_mchid, tf_bills.trade_lines_from)

    async def split_lines(self, bill_date: date, sub_mchid: str | None = None) -> list[tf_bills.ChannelSplitLine]:
        return await self._bill_lines(tf_bills.SPLIT_BILL, bill_date, sub_mchid, tf_bills.split_lines_from)

    async def payout_lines(self, sub_mchid: str, bill_date: date) -> list[tf_bills.ChannelPayoutLine]:
        return await self._bill_lines(tf_bills.FUNDFLOW_BILL, bill_date, sub_mchid,
                                      lambda rows: tf_bills.payout_lines_from(sub_mchid, rows))

    async def _bill_lines(self, bill: tf_bills.ChannelBill, bill_date: date, sub_mchid: str | None,
                          transform: Callable[[bill_shapes.Bill], list[T]]) -> list[T]:
        """The bill's lines in our words; none when the channel has no bill that day."""
        data = await self.bill_file(bill, bill_date, sub_mchid)
        return [] if data is None else _parsed(data, bill, transform)

    # -- business-circle points ----------------------------------------------------------

    async def notify_points(self, notice: ChannelPointsNotice) -> None:
        """Tell WeChat what a paid transaction earned in mall points (204, no body)."""
        await self._http.call("POST", "/v3/businesscircle/points/notify", tf.points_notice_body(notice))

    # -- notifications -------------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> ChannelNotice:
        """Verify, decrypt and read any notification WeChat Pay sends the mall.

        Raises ChannelNotificationRejected when the signature, timestamp, key id, event
        type, ciphertext or resource does not check out, or when it concerns another mall;
        the caller should then answer non-2xx so WeChat retries (a genuine notification
        will verify next time).
        """
        opened = self._http.open_notification(headers, body)
        try:
            if opened.event_type == tf.EVENT_TRANSACTION_SUCCESS and opened.original_type != "profitsharing":
                notice: ChannelNotice = ChannelPaymentNotice(opened.event_id, self._paid_trade(opened.resource))
            elif opened.event_type in tf_refunds.EVENT_REFUND_STATES:
                notice = tf_refunds.refund_notice_from(opened.event_id, opened.event_type, opened.resource)
            elif opened.event_type in _SPLIT_EVENTS:
                notice = tf_splits.split_notice_from(opened.event_id, _SPLIT_EVENTS[opened.event_type],
                                                     opened.resource)
            else:
                raise rejected("event_type")
        except tf.UnexpectedChannelResponse:
            raise rejected("resource shape") from None
        mall = notice.trade.sp_mchid if isinstance(notice, ChannelPaymentNotice) else notice.sp_mchid
        if mall != self._credentials.sp_mchid:
            raise rejected("sp_mchid")
        return notice

    def parse_payment_notification(self, headers: Mapping[str, str], body: bytes) -> ChannelTrade:
        """Like parse_notification, for callers that accept TRANSACTION.SUCCESS only."""
        notice = self.parse_notification(headers, body)
        if not isinstance(notice, ChannelPaymentNotice):
            raise rejected("event_type")
        return notice.trade

    def _paid_trade(self, resource: dict[str, Any]) -> ChannelTrade:
        trade = tf.trade_from(resource)
        if trade.state is not ChannelTradeState.SUCCESS or trade.transaction_id is None:
            raise rejected("trade_state")
        return trade

    # -- helpers ---------------------------------------------------------------------------

    async def _query_trade(self, path: str, sub_mchid: str) -> ChannelTrade | None:
        query = urlencode({"sp_mchid": self._credentials.sp_mchid, "sub_mchid": sub_mchid})
        return await self._absent_on_404(self._get(f"{path}?{query}", tf.trade_from))

    async def _get(self, target: str, transform: Callable[[Any], T]) -> T:
        _, data = await self._http.call("GET", target, None)
        return self._http.read(transform, data)

    @staticmethod
    async def _absent_on_404(query: Coroutine[Any, Any, T]) -> T | None:
        try:
            return await query
        except ChannelNotFound:
            return None


def _parsed(data: bytes, bill: tf_bills.ChannelBill, transform: Callable[[bill_shapes.Bill], T]) -> T:
    try:
        return transform(bill_shapes.parse_bill(bill.shape, data, columns=bill.columns))
    except (bill_shapes.BillFormatError, KeyError, ValueError) as exc:
        raise ChannelError(tf.CODE_BAD_RESPONSE, f"bill file unreadable: {exc}", retryable=True) from None


def _segment(value: str) -> str:
    return quote(value, safe="")
