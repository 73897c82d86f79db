"""A statement as JSON (amounts in fen, as WeChat's JSON APIs count) and as CSV in WeChat's
trade-bill style: UTF-8 with a BOM so a spreadsheet opens it as UTF-8, a header row,
every value prefixed with a backtick so spreadsheets keep ids as text, amounts in yuan,
then a summary header and row, the accounts' balances and the tie line."""

from __future__ import annotations

import csv
import io

import orjson

from ledger.money import yuan
from ledger.statements import CHINA, COLUMNS, RenderedStatement, Statement

BOM = "\ufeff"
COLUMN_TITLES = {
    "gross": "收款金额 gross", "fee": "手续费 fee", "commission": "佣金 commission",
    "guide_rewards": "导购奖励 guide rewards", "other_splits": "其他分账 other splits",
    "coupon_subsidy": "券补贴 coupon subsidy", "payout": "结算出款 payout", "other": "其他 other",
    "net": "净额 net",
}
LINE_HEADER = ["交易时间 time", "类型 type", "特约商户号 sub_mchid", "商户订单号 out_trade_no",
               "微信订单号 transaction_id", "业务单号 reference", "账本流水号 transfer_id",
               *(COLUMN_TITLES[c] for c in COLUMNS)]
ACCOUNT_HEADER = ["账户 account", "期初余额 opening", "本期发生 movements", "期末余额 closing", "相符 ties"]


def statement_json(statement: Statement) -> dict:
    return {
        **_json_head(statement),
        "lines": [{
            "time": line.created_at.isoformat(), "type": line.kind, "label": line.label,
            "out_trade_no": line.out_trade_no, "transaction_id": line.transaction_id,
            "reference": line.reference, "transfer_id": line.transfer_id,
            **line.amounts_fen,
        } for line in statement.lines],
        **_json_tail(statement, len(statement.lines)),
    }


def _json_head(statement: Statement | RenderedStatement) -> dict:
    return {
        "sub_mchid": statement.sub_mchid,
        "date": statement.from_on.isoformat(), "to": statement.to_on.isoformat(),
        "timezone": "Asia/Shanghai",
        "from_time": statement.from_at.isoformat(), "to_time": statement.to_at.isoformat(),
        "currency": "CNY",
    }


def _json_tail(statement: Statement | RenderedStatement, count: int) -> dict:
    return {
        "totals": {"count": count, **statement.totals_fen},
        "accounts": [{"account": t.account, "opening": t.opening_fen, "movements": t.movements_fen,
                      "closing": t.closing_fen, "ties": t.ties} for t in statement.accounts],
        "ties_to_ledger": statement.ties,
        "tie_statement": statement.tie_text,
    }


def statement_json_bytes(statement: Statement) -> bytes:
    """`statement_json` as compact UTF-8 JSON, the bytes gateway.wire.json_bytes would give
    (orjson writes the same: no spaces, non-ASCII as is), several times faster on a day of lines."""
    return orjson.dumps(statement_json(statement))


def rendered_json_bytes(statement: RenderedStatement) -> bytes:
    """The bytes `statement_json_bytes` gives for the same statement: the database wrote the
    line objects (ledger/repo.py), the rest is written here around them."""
    assert statement.json_lines is not None, "the JSON lines were not asked for"
    head = orjson.dumps(_json_head(statement))
    tail = orjson.dumps(_json_tail(statement, statement.count))
    return b"".join((head[:-1], b',"lines":[', statement.json_lines.encode(), b"],", tail[1:]))


def _ticked(values) -> list[str]:
    return [f"`{'' if v is None else v}" for v in values]


class _TickedYuan(dict):
    """fen → "`12.34", formatting each amount the first time it is asked for."""

    def __missing__(self, amount_fen: int) -> str:
        text = self[amount_fen] = f"`{yuan(amount_fen)}"
        return text


def statement_csv(statement: Statement) -> bytes:
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(LINE_HEADER)
    # Amounts repeat across lines (zeros above all): each distinct one is formatted once.
    ticked = _TickedYuan().__getitem__
    store = f"`{statement.sub_mchid}"
    rows = []
    for line in statement.lines:
        # (isoformat of the China-time instant, less its "+08:00": "YYYY-MM-DD HH:MM:SS")
        rows.append([f"`{line.created_at.astimezone(CHINA).isoformat(' ', 'seconds')[:19]}",
                     f"`{line.label}", store, "`" if line.out_trade_no is None else f"`{line.out_trade_no}",
                     "`" if line.transaction_id is None else f"`{line.transaction_id}", f"`{line.reference}",
                     f"`{line.transfer_id}", *map(ticked, map(line.amounts_fen.__getitem__, COLUMNS))])
    writer.writerows(rows)
    _csv_tail(writer, statement, len(statement.lines))
    return out.getvalue().encode("utf-8")


def rendered_csv(statement: RenderedStatement) -> bytes:
    """The bytes `statement_csv` gives for the same statement: the database wrote the line
    rows (ledger/repo.py), the rest is written here around them."""
    assert statement.csv_lines is not None, "the CSV lines were not asked for"
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(LINE_HEADER)
    out.write(statement.csv_lines)
    _csv_tail(writer, statement, statement.count)
    return out.getvalue().encode("utf-8")


def _csv_tail(writer, statement: Statement | RenderedStatement, count: int) -> None:
    writer.writerow(["总笔数 count", *(COLUMN_TITLES[c] for c in COLUMNS)])
    writer.writerow(_ticked([count, *(yuan(statement.totals_fen[c]) for c in COLUMNS)]))
    writer.writerow(ACCOUNT_HEADER)
    for tie in statement.accounts:
        writer.writerow(_ticked([tie.account, yuan(tie.opening_fen), yuan(tie.movements_fen),
                                 yuan(tie.closing_fen), "是 yes" if tie.ties else "否 NO"]))
    writer.writerow(["对账结论 reconciliation"])
    writer.writerow(_ticked([statement.tie_text]))
