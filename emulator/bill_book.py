"""The emulator's bills: what WeChat writes into the trade, profit-sharing and fund-flow
bills of a day, the T+1 payouts that fill the fund-flow bill, files waiting for download,
and the sandbox's tampering with bill lines.

Days are China time. The bill of day D is ready from 10:00 on D+1 (`ready_at`). Each
store's available balance is paid out to its bank every day at `PAYOUT_HOUR` China time
(T+1: what came in yesterday leaves today); `Payouts.catch_up` runs the payouts that are
due by the emulator's clock, so a test that moves the clock gets them.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Iterable

from emulator.funds import Funds
from emulator.refund_book import Refund
from emulator.refund_book import SUCCESS as REFUND_SUCCESS
from emulator.split_book import KIND_UNFREEZE, SplitOrder, SplitReturn
from emulator.split_book import SUCCESS as SPLIT_SUCCESS
from emulator.state import PAID_STATES, Order
from emulator.wire import CHINA_TZ
from gateway.shapes import bills as shapes
from gateway.shapes.bills import bill_time, day_window, rate_text

PAYOUT_HOUR = 6
PAYOUT_DAYS_CATCH_UP_MAX = 366  # a clock moved further than this pays out once for the gap
TAMPERS_MAX = 1_000
BILL_NAMES = ("trade", "profitsharing", "fundflow")
TAMPER_ACTIONS = ("drop", "add", "alter_amount", "alter_status", "alter_fee")
AMOUNT_COLUMN = {"trade": ("应结订单金额", "订单金额"), "profitsharing": ("分账金额",), "fundflow": ("收支金额(元)",)}
STATUS_COLUMN = {"trade": "交易状态", "profitsharing": "处理状态", "fundflow": "业务类型"}


def _within(moment: datetime | None, window: tuple[datetime, datetime]) -> bool:
    return moment is not None and window[0] <= moment < window[1]


# -- trade bill -------------------------------------------------------------------------

def trade_rows(orders: Iterable[Order], refunds: Iterable[Refund], funds: Funds, fee_rate_bps: int,
               bill_date: date, sub_mchid: str | None) -> list[dict[str, Any]]:
    window = day_window(bill_date)
    rows = []
    for order in orders:
        if order.state in PAID_STATES and _within(order.success_at, window) and sub_mchid in (None, order.sub_mchid):
            trade = funds.trade(order.transaction_id or "")
            fee_fen = trade.fee_fen if trade is not None else (order.total_fen * fee_rate_bps + 5000) // 10000
            rows.append(_trade_row(order, order.success_at, "SUCCESS", fee_rate_bps, fee_fen=fee_fen,
                                   settled_fen=order.total_fen))
    by_trade = {order.transaction_id: order for order in orders if order.transaction_id}
    for refund in refunds:
        order = by_trade.get(refund.transaction_id)
        if (order is None or refund.status != REFUND_SUCCESS or not _within(refund.success_at, window)
                or sub_mchid not in (None, refund.sub_mchid)):
            continue
        row = _trade_row(order, refund.success_at, "REFUND", fee_rate_bps, fee_fen=-refund.refund_fee_fen,
                         settled_fen=0)
        row.update({"微信退款单号": refund.refund_id, "商户退款单号": refund.out_refund_no, "退款金额": refund.refund_fen,
                    "申请退款金额": refund.refund_fen, "退款类型": "ORIGINAL", "退款状态": "SUCCESS"})
        rows.append(row)
    return rows


def _trade_row(order: Order, at: datetime, status: str, fee_rate_bps: int, *, fee_fen: int,
               settled_fen: int) -> dict[str, Any]:
    return {
        "交易时间": bill_time(at), "公众账号ID": order.sp_appid, "商户号": order.sp_mchid,
        "特约商户号": order.sub_mchid, "设备号": "", "微信订单号": order.transaction_id,
        "商户订单号": order.out_trade_no, "用户标识": order.payer_sp_openid or order.payer_sub_openid or "",
        "交易类型": "JSAPI", "交易状态": status, "付款银行": order.bank_type or "OTHERS", "货币种类": order.currency,
        "应结订单金额": settled_fen, "代金券金额": 0, "微信退款单号": "0", "商户退款单号": "0", "退款金额": 0,
        "充值券退款金额": 0, "退款类型": "", "退款状态": "", "商品名称": order.description,
        "商户数据包": order.attach or "", "手续费": fee_fen, "费率": rate_text(fee_rate_bps),
        "订单金额": settled_fen, "申请退款金额": 0, "费率备注": "",
    }


# -- profit-sharing bill ----------------------------------------------------------------

def profitsharing_rows(split_orders: Iterable[SplitOrder], returns: Iterable[SplitReturn], bill_date: date,
                       sub_mchid: str | None) -> list[dict[str, Any]]:
    window = day_window(bill_date)
    rows = []
    by_order_no: dict[tuple[str, str], SplitOrder] = {}
    for order in split_orders:
        by_order_no[(order.sub_mchid, order.out_order_no)] = order
        if sub_mchid not in (None, order.sub_mchid):
            continue
        business = shapes.UNFREEZE_BUSINESS if order.kind == KIND_UNFREEZE else shapes.SPLIT_BUSINESS
        for line in order.lines:
            if line.result == SPLIT_SUCCESS and _within(line.finished_at, window) and line.amount_fen:
                rows.append({
                    "分账发起时间": bill_time(line.finished_at), "分账发起方": order.sp_mchid,
                    "分账出资方": order.sub_mchid, "微信订单号": order.transaction_id,
                    "微信分账/回退单号": order.order_id, "商户分账/回退单号": order.out_order_no,
                    "分账明细单号": line.detail_id, "分账接收方": line.account, "分账金额": line.amount_fen,
                    "业务类型": business, "处理状态": "SUCCESS", "分账描述": line.description,
                })
    for ret in returns:
        origin = by_order_no.get((ret.sub_mchid, ret.out_order_no))
        if ret.result != SPLIT_SUCCESS or not _within(ret.finished_at, window) or sub_mchid not in (None, ret.sub_mchid):
            continue
        rows.append({
            "分账发起时间": bill_time(ret.finished_at), "分账发起方": origin.sp_mchid if origin else "",
            "分账出资方": ret.sub_mchid, "微信订单号": origin.transaction_id if origin else "",
            "微信分账/回退单号": ret.return_id, "商户分账/回退单号": ret.out_return_no, "分账明细单号": "",
            "分账接收方": ret.return_mchid, "分账金额": ret.amount_fen, "业务类型": shapes.RETURN_BUSINESS,
            "处理状态": "SUCCESS", "分账描述": ret.description,
        })
    return rows


# -- payouts and the fund-flow bill -----------------------------------------------------

@dataclass(frozen=True, slots=True)
class Payout:
    payout_id: str
    flow_id: str
    sub_mchid: str
    amount_fen: int
    paid_at: datetime


@dataclass
class Payouts:
    """Every payout made, per store; bounded by days kept (`days_kept`)."""

    days_kept: int = 90
    last_run_on: date | None = None
    by_day: "OrderedDict[date, list[Payout]]" = field(default_factory=OrderedDict)

    def start(self, now: datetime) -> None:
        """Payouts begin with the emulator: the last one due before it started counts as run."""
        self.last_run_on = _due_on(now)

    def catch_up(self, funds: Funds, now: datetime) -> int:
        """Run every daily payout due by `now`; returns how many stores were paid."""
        due_on = _due_on(now)
        first = (self.last_run_on + timedelta(days=1)) if self.last_run_on else due_on
        first = max(first, due_on - timedelta(days=PAYOUT_DAYS_CATCH_UP_MAX))
        paid = 0
        day = first
        while day <= due_on:
            paid += self._run(funds, day)
            day += timedelta(days=1)
        if self.last_run_on is None or due_on > self.last_run_on:
            self.last_run_on = due_on
        return paid

    def _run(self, funds: Funds, day: date) -> int:
        paid_at = datetime.combine(day, time(PAYOUT_HOUR), tzinfo=CHINA_TZ)
        made = self.by_day.setdefault(day, [])
        for sub_mchid, amount_fen in funds.pay_out_all():
            serial = f"{day:%Y%m%d}{len(made):06d}"
            made.append(Payout(payout_id=f"PO{sub_mchid}{serial}", flow_id=f"FF{sub_mchid}{serial}",
                               sub_mchid=sub_mchid, amount_fen=amount_fen, paid_at=paid_at))
        while len(self.by_day) > self.days_kept:
            self.by_day.popitem(last=False)
        return len(made)

    def of(self, sub_mchid: str, bill_date: date) -> list[Payout]:
        return [p for p in self.by_day.get(bill_date, []) if p.sub_mchid == sub_mchid]


def _due_on(now: datetime) -> date:
    """The day of the latest payout due by `now`."""
    local = now.astimezone(CHINA_TZ)
    return local.date() if local.hour >= PAYOUT_HOUR else local.date() - timedelta(days=1)


def fundflow_rows(payouts: list[Payout]) -> list[dict[str, Any]]:
    return [{
        "记账时间": bill_time(p.paid_at), "微信支付业务单号": p.payout_id, "资金流水单号": p.flow_id,
        "业务名称": "结算", "业务类型": shapes.PAYOUT_BUSINESS, "收支类型": shapes.EXPENSE,
        "收支金额(元)": p.amount_fen, "账户结余(元)": 0, "资金变更提交申请人": "system", "备注": "T+1结算到银行卡",
        "业务凭证号": p.payout_id,
    } for p in payouts]


# -- tampering (sandbox) ------------------------------------------------------------------

@dataclass(frozen=True)
class Tamper:
    bill: str
    bill_date: date
    action: str
    match: dict[str, str]
    values: dict[str, Any]


def apply_tampers(bill: str, rows: list[dict[str, Any]], tampers: Iterable[Tamper]) -> list[dict[str, Any]]:
    """The rows after the sandbox's drops, additions and alterations, in the order given."""
    rows = [dict(r) for r in rows]
    for tamper in tampers:
        hits = [r for r in rows if all(str(r.get(k)) == v for k, v in tamper.match.items())]
        if tamper.action == "drop":
            rows = [r for r in rows if r not in hits]
        elif tamper.action == "add":
            rows.append(dict(tamper.values["row"]))
        elif tamper.action == "alter_amount":
            for row in hits:
                for column in AMOUNT_COLUMN[bill]:
                    row[column] = tamper.values["amount_fen"]
        elif tamper.action == "alter_status":
            for row in hits:
                row[STATUS_COLUMN[bill]] = tamper.values["status"]
        else:
            assert tamper.action == "alter_fee" and bill == "trade"
            for row in hits:
                row["手续费"] = tamper.values["fee_fen"]
    return rows


# -- files waiting for download -----------------------------------------------------------

class BillFiles:
    """Bill bytes by download token, oldest forgotten beyond `files_max`."""

    def __init__(self, files_max: int):
        assert files_max > 0
        self._files_max = files_max
        self._files: OrderedDict[str, bytes] = OrderedDict()

    def put(self, token: str, data: bytes) -> None:
        while len(self._files) >= self._files_max:
            self._files.popitem(last=False)
        self._files[token] = data

    def get(self, token: str) -> bytes | None:
        return self._files.get(token)


def sha1_hex(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@dataclass
class BillState:
    """Everything the emulator keeps about bills, one per app."""

    files: BillFiles = field(default_factory=lambda: BillFiles(1_000))
    payouts: Payouts = field(default_factory=Payouts)
    tampers: list[Tamper] = field(default_factory=list)

    def tampers_of(self, bill: str, bill_date: date) -> list[Tamper]:
        return [t for t in self.tampers if t.bill == bill and t.bill_date == bill_date]

    def add_tamper(self, tamper: Tamper) -> bool:
        if len(self.tampers) >= TAMPERS_MAX:
            return False
        self.tampers.append(tamper)
        return True
