"""The channel's bills, seen from the gateway: what a bill line says, in our words.

`transformers` for bills: which API hands out each bill and what of it the gateway reads
(`TRADE_BILL`, `SPLIT_BILL`, `FUNDFLOW_BILL`), the JSON answers of those APIs
(download_url, hash), and the rows of WeChat's bill files (read by `gateway.shapes.bills`)
mapped into `ChannelTradeLine`, `ChannelSplitLine` and `ChannelPayoutLine`. WeChat's
column names and status words end here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Mapping

from gateway.channel.transformers import UnexpectedChannelResponse, read_mapping, read_text
from gateway.shapes import bills as shapes
from gateway.wire import CHINA_TZ

NO_STATEMENT = "NO_STATEMENT_EXIST"
NOT_READY = "STATEMENT_CREATING"


@dataclass(frozen=True, slots=True)
class BillLink:
    """Where to fetch a bill and how to check it (and open it, for the fund-flow bill)."""

    download_url: str
    sha1_hex: str
    encrypt_key: str | None = None  # RSA-OAEP under the merchant key, base64
    nonce: str | None = None


class TradeLineKind(enum.Enum):
    PAYMENT = "payment"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class ChannelTradeLine:
    kind: TradeLineKind
    sub_mchid: str
    out_trade_no: str
    transaction_id: str
    out_refund_no: str | None
    refund_id: str | None
    amount_fen: int  # what was paid (payment) or refunded (refund)
    fee_fen: int  # the channel's fee; negative on a refund: the fee given back
    state: str  # SUCCESS for a payment, the refund's state for a refund; anything else as written
    at: datetime


class SplitLineKind(enum.Enum):
    SPLIT = "split"
    RETURN = "return"
    UNFREEZE = "unfreeze"


@dataclass(frozen=True, slots=True)
class ChannelSplitLine:
    kind: SplitLineKind
    sub_mchid: str
    transaction_id: str
    out_order_no: str  # out_return_no for a return
    channel_id: str
    receiver: str
    amount_fen: int
    state: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ChannelPayoutLine:
    """Money the channel paid from a store's balance to its bank."""

    sub_mchid: str
    payout_id: str
    amount_fen: int
    paid_at: datetime


# -- JSON answers -----------------------------------------------------------------------

def link_from(data: Mapping[str, Any]) -> BillLink:
    if read_text(data, "hash_type") != "SHA1":
        raise UnexpectedChannelResponse("hash_type is not SHA1")
    return BillLink(read_text(data, "download_url"), read_text(data, "hash_value").lower(),
                    data.get("encrypt_key"), data.get("nonce"))


def fundflow_links_from(data: Mapping[str, Any]) -> list[BillLink]:
    entries = data.get("download_bill_list")
    if not isinstance(entries, list):
        raise UnexpectedChannelResponse("download_bill_list missing")
    links = []
    for entry in sorted((read_mapping(e, "download_bill_list[]") for e in entries),
                        key=lambda e: e.get("bill_sequence", 0)):
        link = link_from(entry)
        if not link.encrypt_key or not link.nonce:
            raise UnexpectedChannelResponse("fund-flow bill without encrypt_key or nonce")
        links.append(link)
    return links


# -- bill rows --------------------------------------------------------------------------

def bill_time_from(text: str) -> datetime:
    """'yyyy-MM-dd HH:mm:ss' in China time."""
    if len(text) != 19 or text[10] != " ":
        raise shapes.BillFormatError(f"not a bill time: {text!r}")
    try:
        return datetime.fromisoformat(text).replace(tzinfo=CHINA_TZ)
    except ValueError:
        raise shapes.BillFormatError(f"not a bill time: {text!r}") from None


def trade_lines_from(bill: shapes.Bill) -> list[ChannelTradeLine]:
    lines = []
    payment, refund = TradeLineKind.PAYMENT, TradeLineKind.REFUND
    for row in bill.rows:
        refund_no = row["商户退款单号"]
        if refund_no not in ("", "0"):
            lines.append(ChannelTradeLine(
                refund, row["特约商户号"], row["商户订单号"], row["微信订单号"], refund_no, row["微信退款单号"],
                row["退款金额"], row["手续费"], row["退款状态"], bill_time_from(row["交易时间"])))
        else:
            lines.append(ChannelTradeLine(
                payment, row["特约商户号"], row["商户订单号"], row["微信订单号"], None, None, row["订单金额"],
                row["手续费"], row["交易状态"], bill_time_from(row["交易时间"])))
    return lines


# What the gateway reads of each bill (the rest of WeChat's columns are left unparsed).
TRADE_COLUMNS = ("交易时间", "特约商户号", "微信订单号", "商户订单号", "交易状态", "微信退款单号", "商户退款单号", "退款金额",
                 "退款状态", "手续费", "订单金额")
SPLIT_COLUMNS = ("分账发起时间", "分账出资方", "微信订单号", "微信分账/回退单号", "商户分账/回退单号", "分账接收方", "分账金额",
                 "业务类型", "处理状态")
FUNDFLOW_COLUMNS = ("记账时间", "微信支付业务单号", "业务类型", "收支类型", "收支金额(元)")


@dataclass(frozen=True, slots=True)
class ChannelBill:
    """One of WeChat's bills as the channel fetches and reads it."""

    path: str  # the API answering with where to download the file
    shape: shapes.BillKind  # the file's format
    columns: tuple[str, ...]  # what the gateway reads of it


TRADE_BILL = ChannelBill("/v3/bill/tradebill", shapes.TRADE, TRADE_COLUMNS)
SPLIT_BILL = ChannelBill("/v3/profitsharing/bills", shapes.PROFITSHARING, SPLIT_COLUMNS)
# One store's balance movements, sealed under the merchant key and handed out in parts.
FUNDFLOW_BILL = ChannelBill("/v3/bill/sub-merchant-fundflowbill", shapes.FUNDFLOW, FUNDFLOW_COLUMNS)

_SPLIT_KINDS = {shapes.SPLIT_BUSINESS: SplitLineKind.SPLIT, shapes.RETURN_BUSINESS: SplitLineKind.RETURN,
                shapes.UNFREEZE_BUSINESS: SplitLineKind.UNFREEZE}


def split_lines_from(bill: shapes.Bill) -> list[ChannelSplitLine]:
    lines = []
    for row in bill.rows:
        kind = _SPLIT_KINDS.get(str(row["业务类型"]))
        if kind is None:
            raise shapes.BillFormatError(f"unknown profit-sharing business type {row['业务类型']!r}")
        lines.append(ChannelSplitLine(
            kind=kind, sub_mchid=str(row["分账出资方"]), transaction_id=str(row["微信订单号"]),
            out_order_no=str(row["商户分账/回退单号"]), channel_id=str(row["微信分账/回退单号"]),
            receiver=str(row["分账接收方"]), amount_fen=int(row["分账金额"]), state=str(row["处理状态"]),
            at=bill_time_from(str(row["分账发起时间"])),
        ))
    return lines


def payout_lines_from(sub_mchid: str, bill: shapes.Bill) -> list[ChannelPayoutLine]:
    """The fund-flow bill's payouts (money out to the bank); other movements are not payouts."""
    return [
        ChannelPayoutLine(sub_mchid=sub_mchid, payout_id=str(row["微信支付业务单号"]), amount_fen=int(row["收支金额(元)"]),
                          paid_at=bill_time_from(str(row["记账时间"])))
        for row in bill.rows
        if row["业务类型"] == shapes.PAYOUT_BUSINESS and row["收支类型"] == shapes.EXPENSE
    ]


def bill_date_text(bill_date: date) -> str:
    return bill_date.isoformat()
