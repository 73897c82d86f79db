"""The gateway's own bills for the mall backend: the trade bill and the profit-sharing
bill of its orders, written in WeChat's format (gateway.shapes.bills) from our records, so
a backend that downloads WeChat's bills with any SDK downloads these the same way.

Applying for a bill answers `{download_url, hash_type: SHA1, hash_value}`. The download
URL carries a token that names what was asked (bill, day, store, GZIP) and who asked,
sealed with an HMAC under a key derived from the gateway's private key: any gateway
process can serve it (the file is rebuilt from the same records, so the hash holds), only
the client that applied can download it, and only within `TOKEN_TTL_S`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from cryptography.hazmat.primitives import serialization

from gateway.domain_errors import DomainError
from gateway.repo import bills as repo
from gateway.services.context import Services
from gateway.shapes import bills as shapes
from gateway.wire import CHINA_TZ
from ledger.payments import channel_fee_fen

TOKEN_TTL_S = 10 * 60
BILL_DAYS_BACK_MAX = 90  # as WeChat: bills of the last three months
# As WeChat, the bill of day D (China time) is served from 10:00 on D+1
# (shapes.BILL_READY_AFTER): our records of D still move after midnight (a payment of 23:59
# confirmed by the unpaid-order check, a refund's result), and a bill once served must not
# change under its hash; backends written against WeChat already wait for 10:00.


class NoStatement(DomainError):
    """No line that day, or none the caller may see."""

    def __init__(self, reason: str = "no_statement"):
        super().__init__(reason)


class NotReady(DomainError):
    """Before 10:00 China time on the next day."""

    def __init__(self, reason: str = "statement_creating"):
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class BillRequest:
    bill: str  # "trade" or "profitsharing"
    bill_on: date
    sub_mchid: str | None
    gzip_it: bool
    client_id: str


def _trade_row(o, *, at: datetime, state: str, fee_fen: int, settled_fen: int) -> dict:
    return {
        "交易时间": shapes.bill_time(at), "公众账号ID": o["sp_appid"], "商户号": o["mall_id"], "特约商户号": o["sub_mchid"],
        "设备号": "", "微信订单号": o["transaction_id"], "商户订单号": o["out_trade_no"],
        "用户标识": o["payer_sp_openid"] or o["payer_sub_openid"] or "", "交易类型": "JSAPI", "交易状态": state,
        "付款银行": o["bank_type"] or "OTHERS", "货币种类": o["currency"], "应结订单金额": settled_fen, "代金券金额": 0,
        "微信退款单号": "0", "商户退款单号": "0", "退款金额": 0, "充值券退款金额": 0, "退款类型": "", "退款状态": "",
        "商品名称": o["description"], "商户数据包": o["attach"] or "", "手续费": fee_fen, "费率": shapes.rate_text(o["fee_rate_bps"]),
        "订单金额": settled_fen, "申请退款金额": 0, "费率备注": "",
    }


async def trade_rows(conn, mall_id: str, bill_on: date, sub_mchid: str | None) -> list[dict]:
    start, end = shapes.day_window(bill_on)
    rows = []
    for o in await conn.fetch(repo.OWN_PAYMENTS, mall_id, start, end, sub_mchid):
        fee = o["fee_fen"] if o["fee_fen"] is not None else channel_fee_fen(o["total_fen"], o["fee_rate_bps"])
        rows.append(_trade_row(o, at=o["success_at"], state="SUCCESS", fee_fen=fee, settled_fen=o["total_fen"]))
    for r in await conn.fetch(repo.OWN_REFUNDS, mall_id, start, end, sub_mchid):
        row = _trade_row(r, at=r["refunded_at"], state="REFUND", fee_fen=-(r["fee_back_fen"] or 0), settled_fen=0)
        row.update({"微信退款单号": r["refund_id"] or "", "商户退款单号": r["out_refund_no"], "退款金额": r["refund_fen"],
                    "申请退款金额": r["refund_fen"], "退款类型": "ORIGINAL", "退款状态": "SUCCESS"})
        rows.append(row)
    return rows


async def split_rows(conn, mall_id: str, bill_on: date, sub_mchid: str | None) -> list[dict]:
    start, end = shapes.day_window(bill_on)
    rows = []
    for s in await conn.fetch(repo.OWN_SPLITS, mall_id, start, end, sub_mchid):
        for line in (s["result"] or {}).get("receivers", []):
            if line.get("result") != "SUCCESS":
                continue
            rows.append({
                "分账发起时间": shapes.bill_time(s["finished_at"]), "分账发起方": mall_id, "分账出资方": s["sub_mchid"],
                "微信订单号": s["transaction_id"], "微信分账/回退单号": s["order_id"] or "",
                "商户分账/回退单号": s["out_order_no"], "分账明细单号": line.get("detail_id", ""),
                "分账接收方": line["account"], "分账金额": line["amount"], "业务类型": shapes.SPLIT_BUSINESS,
                "处理状态": "SUCCESS", "分账描述": line.get("description", ""),
            })
    for r in await conn.fetch(repo.OWN_RETURNS, mall_id, start, end, sub_mchid):
        rows.append({
            "分账发起时间": shapes.bill_time(r["finished_at"]), "分账发起方": mall_id, "分账出资方": r["sub_mchid"],
            "微信订单号": r["transaction_id"], "微信分账/回退单号": r["return_id"] or "",
            "商户分账/回退单号": r["out_return_no"], "分账明细单号": "", "分账接收方": r["return_mchid"],
            "分账金额": r["amount_fen"], "业务类型": shapes.RETURN_BUSINESS, "处理状态": "SUCCESS", "分账描述": "",
        })
    return rows


async def bill_bytes(svc: Services, mall_id: str, req: BillRequest) -> bytes:
    """The bill file, or NoStatement / NotReady."""
    now = svc.clock()
    if now < shapes.ready_at(req.bill_on):
        raise NotReady()
    if req.bill_on < (now.astimezone(CHINA_TZ).date() - timedelta(days=BILL_DAYS_BACK_MAX)):
        raise NoStatement()
    kind = shapes.TRADE if req.bill == "trade" else shapes.PROFITSHARING
    async with svc.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        build = trade_rows if req.bill == "trade" else split_rows
        rows = await build(conn, mall_id, req.bill_on, req.sub_mchid)
    if not rows:
        raise NoStatement()
    return shapes.write_bill(kind, rows, shapes.summarise(kind, rows), gzip_it=req.gzip_it)


# -- download tokens ----------------------------------------------------------------------

def _token_key(svc: Services) -> bytes:
    der = svc.identity.private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())
    return hashlib.sha256(b"mallpay bill download token\0" + der).digest()


def issue_token(svc: Services, req: BillRequest) -> str:
    claims = {"b": req.bill, "d": req.bill_on.isoformat(), "s": req.sub_mchid, "z": req.gzip_it, "c": req.client_id,
              "e": int(svc.clock().timestamp()) + TOKEN_TTL_S}
    body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode().rstrip("=")
    mac = hmac.new(_token_key(svc), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def read_token(svc: Services, token: str, client_id: str) -> BillRequest | None:
    """The request a token stands for, or None: forged, expired, or another client's."""
    body, _, mac = token.partition(".")
    want = hmac.new(_token_key(svc), body.encode(), hashlib.sha256).hexdigest()
    if not body or not hmac.compare_digest(mac.encode(), want.encode()):  # bytes: any text compares
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        req = BillRequest(claims["b"], date.fromisoformat(claims["d"]), claims["s"], bool(claims["z"]), claims["c"])
        expired = int(claims["e"]) < svc.clock().timestamp()
    except (ValueError, KeyError, TypeError):
        return None
    if expired or req.client_id != client_id:
        return None
    return req
