"""WeChat Pay's bill files: the trade bill, the profit-sharing bill and a sub-merchant's
fund-flow bill, written and read by this one module (the emulator writes with it too).

A bill file is CSV in UTF-8: one header row, detail rows whose every value starts with a
backtick (so a spreadsheet keeps 28-digit ids as text), then a summary header row and one
summary row, also backtick-prefixed. Amounts are yuan with two decimals ("12.34",
"-0.01"); here they are int fen, converted exactly as strings, never through float. A file
may come GZIP-compressed (tar_type=GZIP) and may start with a BOM; both are accepted.
Reading goes by header name, never by position: WeChat adds columns over the years.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Mapping, Sequence

from gateway.wire import CHINA_TZ

GZIP_MAGIC = b"\x1f\x8b"
BOM = "\ufeff"
VALUE_PREFIX = "`"
BILL_BYTES_MAX = 512 * 1024 * 1024  # a gunzipped bill larger than this is refused


class BillFormatError(ValueError):
    """The bytes are not a bill of the expected kind (missing column, bad amount, no summary)."""


@dataclass(frozen=True, slots=True)
class BillKind:
    name: str
    columns: tuple[str, ...]
    amount_columns: frozenset[str]
    summary_columns: tuple[str, ...]
    summary_amount_columns: frozenset[str]


# The trade bill (bill_type=ALL), WeChat's 27 columns in WeChat's order.
TRADE = BillKind(
    name="trade",
    columns=(
        "交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号", "用户标识",
        "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额", "微信退款单号",
        "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态", "商品名称", "商户数据包",
        "手续费", "费率", "订单金额", "申请退款金额", "费率备注",
    ),
    amount_columns=frozenset({"应结订单金额", "代金券金额", "退款金额", "充值券退款金额", "手续费", "订单金额",
                              "申请退款金额"}),
    summary_columns=("总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额", "订单总金额",
                     "申请退款总金额"),
    summary_amount_columns=frozenset({"应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额",
                                      "订单总金额", "申请退款总金额"}),
)

# The profit-sharing bill: one row per successful split line, split return or unfreeze.
PROFITSHARING = BillKind(
    name="profitsharing",
    columns=("分账发起时间", "分账发起方", "分账出资方", "微信订单号", "微信分账/回退单号", "商户分账/回退单号",
             "分账明细单号", "分账接收方", "分账金额", "业务类型", "处理状态", "分账描述"),
    amount_columns=frozenset({"分账金额"}),
    summary_columns=("总笔数", "分账总金额", "回退总金额", "解冻总金额"),
    summary_amount_columns=frozenset({"分账总金额", "回退总金额", "解冻总金额"}),
)

# A sub-merchant's fund-flow bill (BASIC account): every movement of its balance.
FUNDFLOW = BillKind(
    name="fundflow",
    columns=("记账时间", "微信支付业务单号", "资金流水单号", "业务名称", "业务类型", "收支类型", "收支金额(元)",
             "账户结余(元)", "资金变更提交申请人", "备注", "业务凭证号"),
    amount_columns=frozenset({"收支金额(元)", "账户结余(元)"}),
    summary_columns=("资金流水总笔数", "收入笔数", "收入金额", "支出笔数", "支出金额"),
    summary_amount_columns=frozenset({"收入金额", "支出金额"}),
)

KINDS = {kind.name: kind for kind in (TRADE, PROFITSHARING, FUNDFLOW)}

Row = dict[str, str | int]


@dataclass(frozen=True, slots=True)
class Bill:
    """A parsed bill: rows and summary keyed by column name; amount columns in int fen."""

    kind: BillKind
    rows: list[Row]
    summary: Row


# -- yuan <-> fen, exactly --------------------------------------------------------------

def yuan(fen: int) -> str:
    """12345 -> "123.45", -1 -> "-0.01"."""
    assert isinstance(fen, int) and not isinstance(fen, bool)
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def fen_of(text: str) -> int:
    """"123.45" -> 12345, "-0.01" -> -1, "7" -> 700, "0.5" -> 50; anything else raises.

    String arithmetic only (a bill has hundreds of thousands of amounts: no regex, no float)."""
    if len(text) > 3 and text[-3] == "." and text.isascii() and text[:-3].isdigit() and text[-2:].isdigit():
        return int(text[:-3]) * 100 + int(text[-2:])  # the usual "123.45"
    body = text.strip()
    negative = body.startswith("-")
    if negative:
        body = body[1:]
    whole, dot, cents = body.partition(".")
    if (not whole.isascii() or not whole.isdigit() or (dot and not (cents.isascii() and cents.isdigit()))
            or len(cents) > 2):
        raise BillFormatError(f"not an amount in yuan: {text!r}")
    fen = int(whole) * 100 + (int(cents.ljust(2, "0")) if cents else 0)
    return -fen if negative else fen


# -- writing --------------------------------------------------------------------------

def write_bill(kind: BillKind, rows: Sequence[Mapping[str, str | int]], summary: Mapping[str, str | int],
               *, gzip_it: bool = False, columns: Sequence[str] | None = None) -> bytes:
    """The bill file's bytes. `columns` reorders or subsets the header (tests, older bills);
    a value missing from a row is written empty."""
    header = tuple(columns or kind.columns)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(kind.amount_columns, name, row.get(name, "")) for name in header])
    writer.writerow(kind.summary_columns)
    writer.writerow([_cell(kind.summary_amount_columns, name, summary.get(name, ""))
                     for name in kind.summary_columns])
    data = out.getvalue().encode()
    return gzip.compress(data, mtime=0) if gzip_it else data


def _cell(amounts: frozenset[str], name: str, value: str | int) -> str:
    if name in amounts and value != "":
        assert isinstance(value, int), f"{name} is an amount in fen: {value!r}"
        return VALUE_PREFIX + yuan(value)
    assert not isinstance(value, bool)
    return VALUE_PREFIX + str(value)


# -- reading --------------------------------------------------------------------------

def parse_bill(kind: BillKind, data: bytes, *, columns: Sequence[str] | None = None) -> Bill:
    """Read a bill of `kind` (GZIP or not, BOM or not). Raises BillFormatError.

    `columns` keeps only those columns in the rows (a reader that needs a few of the 27
    saves most of the work on a busy day's bill); by default every column is kept."""
    text = _text_of(data)
    lines = [line for line in csv.reader(io.StringIO(text)) if len(line) > 1 or (line and line[0].strip())]
    if not lines:
        raise BillFormatError("empty bill")
    header = [cell.strip() for cell in lines[0]]
    _require(header, kind.columns, "header")
    summary_at = next((i for i, line in enumerate(lines) if i > 0 and _plain(line[0]) == kind.summary_columns[0]),
                      None)
    if summary_at is None or summary_at + 1 >= len(lines):
        raise BillFormatError("no summary at the end of the bill")
    summary_header = [cell.strip() for cell in lines[summary_at]]
    _require(summary_header, kind.summary_columns, "summary header")
    wanted = header if columns is None else list(columns)
    _require(header, tuple(wanted), "header")
    picked = [header.index(name) for name in wanted]
    amounts = [(position, name) for position, name in enumerate(wanted) if name in kind.amount_columns]
    rows = [_row(amounts, wanted, picked, len(header), line) for line in lines[1:summary_at]]
    summary_amounts = [(i, n) for i, n in enumerate(summary_header) if n in kind.summary_amount_columns]
    summary = _row(summary_amounts, summary_header, list(range(len(summary_header))), len(summary_header),
                   lines[summary_at + 1])
    return Bill(kind, rows, summary)


def _text_of(data: bytes) -> str:
    if data[:2] == GZIP_MAGIC:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as unzipped:
                data = unzipped.read(BILL_BYTES_MAX + 1)
        except (OSError, EOFError) as exc:
            raise BillFormatError(f"broken GZIP: {exc}") from None
        if len(data) > BILL_BYTES_MAX:
            raise BillFormatError("bill larger than BILL_BYTES_MAX")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BillFormatError("bill is not UTF-8") from None
    return text[1:] if text.startswith(BOM) else text


def _require(header: list[str], wanted: tuple[str, ...], what: str) -> None:
    missing = [name for name in wanted if name not in header]
    if missing:
        raise BillFormatError(f"{what} lacks {', '.join(missing)}")


def _plain(cell: str) -> str:
    cell = cell.strip()
    return cell[1:] if cell.startswith(VALUE_PREFIX) else cell


def _row(amounts: list[tuple[int, str]], names: list[str], picked: list[int], width: int, line: list[str]) -> Row:
    if len(line) != width:
        raise BillFormatError(f"a row has {len(line)} values for {width} columns")
    values = [cell[1:] if cell[:1] == VALUE_PREFIX else cell.strip() for cell in map(line.__getitem__, picked)]
    for position, _ in amounts:
        value = values[position]
        values[position] = fen_of(value) if value else 0
    return dict(zip(names, values))


# -- summaries --------------------------------------------------------------------------

def summarise(kind: BillKind, rows: Sequence[Mapping[str, str | int]]) -> Row:
    """The summary row WeChat writes under the detail rows of `kind`."""
    def total(column: str, **where: str) -> int:
        return sum(int(r[column]) for r in rows if all(r.get(k) == v for k, v in where.items()))

    if kind is TRADE:
        return {"总交易单数": len(rows), "应结订单总金额": total("应结订单金额"), "退款总金额": total("退款金额"),
                "充值券退款总金额": total("充值券退款金额"), "手续费总金额": total("手续费"),
                "订单总金额": total("订单金额"), "申请退款总金额": total("申请退款金额")}
    if kind is PROFITSHARING:
        return {"总笔数": len(rows), "分账总金额": total("分账金额", 业务类型=SPLIT_BUSINESS),
                "回退总金额": total("分账金额", 业务类型=RETURN_BUSINESS),
                "解冻总金额": total("分账金额", 业务类型=UNFREEZE_BUSINESS)}
    assert kind is FUNDFLOW
    income = [r for r in rows if r.get("收支类型") == INCOME]
    spent = [r for r in rows if r.get("收支类型") == EXPENSE]
    return {"资金流水总笔数": len(rows), "收入笔数": len(income), "收入金额": sum(int(r["收支金额(元)"]) for r in income),
            "支出笔数": len(spent), "支出金额": sum(int(r["收支金额(元)"]) for r in spent)}


# As WeChat: the bill of day D (China time) is served from 10:00 on D+1.
BILL_READY_AFTER = timedelta(days=1, hours=10)


def day_window(bill_on: date) -> tuple[datetime, datetime]:
    """The instants [start, end) of the China-time day a bill covers."""
    start = datetime.combine(bill_on, time(0), tzinfo=CHINA_TZ)
    return start, start + timedelta(days=1)


def ready_at(bill_on: date) -> datetime:
    """When the bill of `bill_on` may be downloaded."""
    return day_window(bill_on)[0] + BILL_READY_AFTER


def bill_time(moment: datetime) -> str:
    """A bill's time: China time, 'yyyy-MM-dd HH:mm:ss'."""
    return moment.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def rate_text(bps: int) -> str:
    """A bill's fee rate: basis points as a percentage with two decimals ("0.60%")."""
    return f"{bps // 100}.{bps % 100:02d}%"


# Values WeChat writes in the columns the gateway reads.
SPLIT_BUSINESS = "分账"
RETURN_BUSINESS = "回退"
UNFREEZE_BUSINESS = "解冻给分账方"
INCOME = "收入"
EXPENSE = "支出"
PAYOUT_BUSINESS = "提现"
