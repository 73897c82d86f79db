"""WeChat Pay's bill APIs: apply for a bill, then download it.

  GET /v3/bill/tradebill?bill_date&sub_mchid[&bill_type=ALL][&tar_type=GZIP]
  GET /v3/profitsharing/bills?bill_date[&sub_mchid][&tar_type=GZIP]
      -> {download_url, hash_type: "SHA1", hash_value}
  GET /v3/bill/sub-merchant-fundflowbill?sub_mchid&bill_date&account_type=BASIC
      &algorithm=AEAD_AES_256_GCM[&tar_type=GZIP]
      -> {download_bill_count, download_bill_list: [{bill_sequence, download_url,
          encrypt_key, hash_type, hash_value, nonce}]}: the file is AES-256-GCM under a
          fresh key, which comes RSA-OAEP encrypted under the merchant's own public key.
  GET /v3/billdownload/file?token=...   the file's bytes (signed, like every answer)

A day without any line answers 400 NO_STATEMENT_EXIST; a day whose bill is not ready
(before 10:00 China time the next day) answers 400 STATEMENT_CREATING. `hash_value` is the
SHA-1 of the bytes served (of the decrypted bytes for the encrypted fund-flow bill).

Sandbox levers (unsigned, loopback): POST /sandbox/bills/tamper drops, adds or alters bill
lines so the gateway's reconciliation meets real discrepancies; POST /sandbox/payouts/run
runs the daily payouts due by the emulator's clock.
"""

from __future__ import annotations

import base64
import secrets
from datetime import date, datetime

from aiohttp import web

from emulator import keys
from emulator.auth import caller_mchid
from emulator.bill_book import (
    BILL_NAMES, TAMPER_ACTIONS, Tamper, apply_tampers, fundflow_rows, profitsharing_rows, sha1_hex,
    trade_rows,
)
from emulator.fields import MCHID_RE
from emulator.wire import EmulatorError, json_response, param_error, read_json_object
from gateway import signing
from gateway.shapes import bills as shapes

routes = web.RouteTableDef()
DOWNLOAD_PATH = "/v3/billdownload/file"
KEY_CHARS = 32
NONCE_CHARS = 12


def _bill_date(request: web.Request) -> date:
    text = request.query.get("bill_date", "")
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise param_error("bill_date must be yyyy-MM-DD") from None


def _sub_mchid(request: web.Request, *, required: bool) -> str | None:
    sub_mchid = request.query.get("sub_mchid")
    if sub_mchid is None and not required:
        return None
    if not sub_mchid or not MCHID_RE.fullmatch(sub_mchid):
        raise param_error("sub_mchid must be digits")
    return sub_mchid


def _gzip(request: web.Request) -> bool:
    tar_type = request.query.get("tar_type")
    if tar_type not in (None, "GZIP"):
        raise param_error("tar_type must be GZIP")
    return tar_type == "GZIP"


def _check_ready(request: web.Request, bill_date: date) -> datetime:
    now = request.app[keys.CLOCK]()
    if now < shapes.ready_at(bill_date):
        raise EmulatorError(400, "STATEMENT_CREATING", "账单生成中，请在次日上午十点以后再下载")
    return now


def _publish(request: web.Request, data: bytes, hashed: bytes) -> dict[str, str]:
    token = secrets.token_urlsafe(24)
    request.app[keys.BILLS].files.put(token, data)
    url = f"{request.scheme}://{request.host}{DOWNLOAD_PATH}?token={token}"
    return {"download_url": url, "hash_type": "SHA1", "hash_value": sha1_hex(hashed)}


def _no_statement() -> EmulatorError:
    return EmulatorError(400, "NO_STATEMENT_EXIST", "账单文件不存在")


@routes.get("/v3/bill/tradebill")
async def trade_bill(request: web.Request) -> web.Response:
    bill_date, sub_mchid, gzip_it = _bill_date(request), _sub_mchid(request, required=False), _gzip(request)
    if request.query.get("bill_type", "ALL") != "ALL":
        raise param_error("only bill_type=ALL is offered")
    _check_ready(request, bill_date)
    app, mall = request.app, caller_mchid(request)
    orders = [o for o in app[keys.ORDERS].all() if o.sp_mchid == mall]
    rows = trade_rows(orders, app[keys.REFUNDS].all(), app[keys.FUNDS], app[keys.CONFIG].fee_rate_bps,
                      bill_date, sub_mchid)
    rows = apply_tampers("trade", rows, app[keys.BILLS].tampers_of("trade", bill_date))
    if not rows:
        raise _no_statement()
    data = shapes.write_bill(shapes.TRADE, rows, shapes.summarise(shapes.TRADE, rows), gzip_it=gzip_it)
    return json_response(_publish(request, data, data))


@routes.get("/v3/profitsharing/bills")
async def profitsharing_bill(request: web.Request) -> web.Response:
    bill_date, sub_mchid, gzip_it = _bill_date(request), _sub_mchid(request, required=False), _gzip(request)
    _check_ready(request, bill_date)
    app, mall = request.app, caller_mchid(request)
    book = app[keys.SPLITS]
    rows = profitsharing_rows([o for o in book.all_orders() if o.sp_mchid == mall], book.all_returns(),
                              bill_date, sub_mchid)
    rows = apply_tampers("profitsharing", rows, app[keys.BILLS].tampers_of("profitsharing", bill_date))
    if not rows:
        raise _no_statement()
    summary = shapes.summarise(shapes.PROFITSHARING, rows)
    data = shapes.write_bill(shapes.PROFITSHARING, rows, summary, gzip_it=gzip_it)
    return json_response(_publish(request, data, data))


@routes.get("/v3/bill/sub-merchant-fundflowbill")
async def fundflow_bill(request: web.Request) -> web.Response:
    sub_mchid, bill_date, gzip_it = _sub_mchid(request, required=True), _bill_date(request), _gzip(request)
    if request.query.get("account_type") not in ("BASIC", "OPERATION", "FEES"):
        raise param_error("account_type must be BASIC, OPERATION or FEES")
    if request.query.get("algorithm") != "AEAD_AES_256_GCM":
        raise param_error("algorithm must be AEAD_AES_256_GCM")
    now = _check_ready(request, bill_date)
    app = request.app
    state = app[keys.BILLS]
    state.payouts.catch_up(app[keys.FUNDS], now)
    payouts = state.payouts.of(sub_mchid, bill_date) if request.query["account_type"] == "BASIC" else []
    rows = apply_tampers("fundflow", fundflow_rows(payouts), state.tampers_of(f"fundflow:{sub_mchid}", bill_date)
                         + state.tampers_of("fundflow", bill_date))
    if not rows:
        raise _no_statement()
    plain = shapes.write_bill(shapes.FUNDFLOW, rows, shapes.summarise(shapes.FUNDFLOW, rows), gzip_it=gzip_it)
    key, nonce = secrets.token_hex(KEY_CHARS // 2), secrets.token_hex(NONCE_CHARS // 2)
    sealed = base64.b64decode(signing.aes_gcm_encrypt(key.encode(), plain, nonce, ""))
    merchant_key = _merchant_public_key(request)
    entry = {"bill_sequence": 1, **_publish(request, sealed, plain),
             "encrypt_key": signing.oaep_encrypt(merchant_key, key), "nonce": nonce}
    return json_response({"download_bill_count": 1, "download_bill_list": [entry]})


def _merchant_public_key(request: web.Request):
    merchant = request.app[keys.CONFIG].credentials.merchants[caller_mchid(request)]
    serial = signing.parse_authorization(request.headers.get("Authorization")).serial_no
    return merchant.public_keys.get(serial) or next(iter(merchant.public_keys.values()))


@routes.get(DOWNLOAD_PATH)
async def download(request: web.Request) -> web.Response:
    data = request.app[keys.BILLS].files.get(request.query.get("token", ""))
    if data is None:
        raise EmulatorError(404, "RESOURCE_NOT_EXISTS", "账单文件不存在或已过期")
    content_type = "application/octet-stream" if data[:2] == shapes.GZIP_MAGIC else "text/plain"
    return web.Response(body=data, content_type=content_type, charset=None if data[:2] == shapes.GZIP_MAGIC
                        else "utf-8")


# -- sandbox --------------------------------------------------------------------------

@routes.post("/sandbox/bills/tamper")
async def tamper(request: web.Request) -> web.Response:
    """{bill: trade|profitsharing|fundflow[:sub_mchid], bill_date, action, match: {column: value},
    row (add), amount_fen (alter_amount), status (alter_status), fee_fen (alter_fee)}"""
    body = await read_json_object(request)
    bill, action = body.get("bill"), body.get("action")
    if not isinstance(bill, str) or bill.partition(":")[0] not in BILL_NAMES:
        raise param_error(f"bill must be one of {BILL_NAMES}")
    if action not in TAMPER_ACTIONS or (action == "alter_fee" and bill != "trade"):
        raise param_error(f"action must be one of {TAMPER_ACTIONS} (alter_fee: trade bill only)")
    try:
        bill_date = date.fromisoformat(str(body.get("bill_date")))
    except ValueError:
        raise param_error("bill_date must be yyyy-MM-DD") from None
    match = body.get("match") or {}
    if not isinstance(match, dict) or not all(isinstance(v, str) for v in match.values()):
        raise param_error("match must map column names to text")
    if action != "add" and not match:
        raise param_error("match is required")
    wanted = {"add": ("row", dict), "alter_amount": ("amount_fen", int), "alter_status": ("status", str),
              "alter_fee": ("fee_fen", int)}.get(action)
    values = {}
    if wanted is not None:
        value = body.get(wanted[0])
        if not isinstance(value, wanted[1]) or isinstance(value, bool):
            raise param_error(f"{action} needs {wanted[0]}")
        values[wanted[0]] = value
    if not request.app[keys.BILLS].add_tamper(Tamper(bill, bill_date, action, match, values)):
        raise EmulatorError(429, "FREQUENCY_LIMITED", "too many bill tampers")
    return json_response({"bill": bill, "bill_date": bill_date.isoformat(), "action": action})


@routes.post("/sandbox/payouts/run")
async def run_payouts(request: web.Request) -> web.Response:
    app = request.app
    paid = app[keys.BILLS].payouts.catch_up(app[keys.FUNDS], app[keys.CLOCK]())
    return json_response({"stores_paid": paid})
