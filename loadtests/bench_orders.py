"""The benchmark's orders, and the shape of what the gateway's `_apply` sends for one.

Shared by both sides of bench_payment_tx.py: the NOTPAY orders made in bulk, the two
statements each side runs, and the self-check that pgbench's arguments are `_apply`'s.
`_apply` (gateway.services.payments) is private, but calling it is the point: the
benchmark follows the gateway's argument building as it changes instead of copying it.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from datetime import datetime, timedelta, timezone

from gateway import signing
from gateway.api.requests.mall import parse_new_client
from gateway.app import database_services
from gateway.channel import ChannelTrade, ChannelTradeState
from gateway.db import create_pool
from gateway.repo.tenants import Tenant
from gateway.services import onboarding, payments
from gateway.services.context import Services
from gateway.services.next_store import CouponRuntime
from gateway.services.onboarding import CONTRACT_DEFAULTS
from gateway.settings import Settings

SUB_MCHID_BASE = 1900000001  # stores are 1900000001 .. +stores-1; order n belongs to n % stores
SEQUENCE_START = 1_000_000  # 'B' || n is then 8+ characters, as out_trade_no must be 6..32
TOTAL_FEN = 12_345
SHOPPER = "oBenchShopper0001"
NOTIFY_URL = "https://mall.example.com/notify"
STATEMENT_TIMEOUT_MS = 300_000
# Placeholders the per-order arguments are rendered from (replaced in this order).
SAMPLE_TRANSACTION_ID = "4299999999999999999999999999"
SAMPLE_OUT_TRADE_NO = "BSAMPLEORDER"
SAMPLE_SUB_MCHID = "1987654321"
# A notification id inside a jsonb argument becomes a fresh gen_random_uuid() per call.
SAMPLE_UUID = "00000000-0000-4000-8000-000000000000"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

CREATE_SEQUENCE = f"CREATE SEQUENCE bench_seq START {SEQUENCE_START}"
INSERT_ORDERS = """
INSERT INTO orders (mall_id, sub_mchid, out_trade_no, client_id, request_hash, sp_appid, description,
                    total_fen, currency, payer_sp_openid, notify_url, profit_sharing, fee_rate_bps,
                    time_expire, mall_info, created_at, next_check_at)
SELECT $1, CAST($2 + n % $3 AS text), 'B' || n, $4, 'bench', $5, 'bench purchase',
       $6, 'CNY', $7, $8, $9, $10, now() + interval '2 hours', '{}', now(), now() + interval '30 days'
  FROM generate_series($11::bigint, $12::bigint) AS n
"""
PAID_ORDERS = "SELECT count(*) FROM orders WHERE state = 'SUCCESS'"
TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?")


# -- what _apply sends ---------------------------------------------------------------------

class RecordingConnection:
    """Stands in for the asyncpg connection once, to see the SQL and arguments _apply sends."""

    def __init__(self):
        self.calls: list[tuple[str, tuple]] = []

    async def fetchval(self, query: str, *args):
        self.calls.append((query, args))
        return "applied"

    def transaction(self):
        """_apply opens a transaction around the payment; recording needs none."""
        return contextlib.nullcontext()


def order_row(settings: Settings, client_id: str, sub_mchid: str, out_trade_no: str, fee_rate_bps: int,
              profit_sharing: bool, created_at: datetime) -> dict:
    """The order as INSERT_ORDERS wrote it, in the shape of `orders_repo.order`'s row."""
    return {
        "mall_id": settings.sp_mchid, "sub_mchid": sub_mchid, "out_trade_no": out_trade_no,
        "client_id": client_id, "request_hash": "bench", "sp_appid": settings.sp_appid, "sub_appid": None,
        "description": "bench purchase", "total_fen": TOTAL_FEN, "currency": "CNY",
        "payer_sp_openid": SHOPPER, "payer_sub_openid": None, "notify_url": NOTIFY_URL, "attach": None,
        "profit_sharing": profit_sharing, "fee_rate_bps": fee_rate_bps,
        "time_expire": created_at + timedelta(hours=2), "mall_info": {}, "state": "NOTPAY",
        "created_at": created_at,
        # the store's contract, read with the order (orders_repo.ORDER_TO_PAY): onboarding's defaults
        "max_ratio_bps": CONTRACT_DEFAULTS["max_ratio_bps"], "approval_id": None,
        "freeze_days": CONTRACT_DEFAULTS["freeze_days"], "guide_reward_bps": CONTRACT_DEFAULTS["guide_reward_bps"],
        "commission_bps": CONTRACT_DEFAULTS["commission_bps"], "auto_split": CONTRACT_DEFAULTS["auto_split"],
        "guide_of_store": False,
    }


def channel_trade(settings: Settings, sub_mchid: str, out_trade_no: str, transaction_id: str,
                  success_at: datetime) -> ChannelTrade:
    """What the channel's TRANSACTION.SUCCESS notification would carry for the order."""
    return ChannelTrade(
        sp_mchid=settings.sp_mchid, sub_mchid=sub_mchid, out_trade_no=out_trade_no,
        transaction_id=transaction_id, state=ChannelTradeState.SUCCESS, total_fen=TOTAL_FEN,
        payer_total_fen=TOTAL_FEN, currency="CNY", bank_type="OTHERS", success_at=success_at,
        payer_sp_openid=SHOPPER, payer_sub_openid=None,
    )


def as_pg_text(value) -> str:
    """An argument as PostgreSQL reads it from text (what pgbench sends)."""
    assert value is not None, "pgbench variables cannot be NULL; the benchmark needs a new shape"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, tuple):  # a composite (ledger_transfer)
        return "(" + ",".join(_quoted(as_pg_text(field)) for field in value) + ")"
    if isinstance(value, list):
        return "{" + ",".join(_quoted(as_pg_text(item)) for item in value) + "}"
    return str(value)


def _quoted(text: str) -> str:
    """An element of an array or a field of a composite, as PostgreSQL parses it."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Shape:
    """The two statements for both sides, derived from one captured `_apply` call."""

    def __init__(self, apply_sql: str, args: tuple, stores: int):
        self.apply_sql = apply_sql
        self.arg_count = len(args)
        self.constants: dict[str, str] = {"stores": str(stores)}
        self.templates: dict[int, str] = {}  # argument number -> text with sample placeholders
        self.uuids: set[int] = set()
        for number, value in enumerate(args, start=1):
            text = as_pg_text(value)
            if isinstance(value, (dict, list)):
                text = UUID_RE.sub(SAMPLE_UUID, text)  # a notification id inside the rows
            if isinstance(value, uuid.UUID):
                self.uuids.add(number)
            elif any(sample in text for sample in (SAMPLE_TRANSACTION_ID, SAMPLE_OUT_TRADE_NO, SAMPLE_SUB_MCHID,
                                                     SAMPLE_UUID)):
                self.templates[number] = text
                self.constants[f"t{number}"] = text
            else:
                self.constants[f"p{number}"] = text
        assert re.fullmatch(r"SELECT mallpay_apply_payment\((\$\d+, )*\$\d+\)", apply_sql.strip()), apply_sql
        self.next_order_template = self._next_order_template()

    def _next_order_template(self) -> str:
        columns = ["n", "o.sub_mchid", "o.out_trade_no", "o.transaction_id"]
        for number in sorted(self.uuids):
            columns.append(f"CAST(gen_random_uuid() AS text) AS p{number}")
        for number in sorted(self.templates):
            columns.append(f"replace(replace(replace(replace(:t{number}, '{SAMPLE_TRANSACTION_ID}', o.transaction_id), "
                           f"'{SAMPLE_OUT_TRADE_NO}', o.out_trade_no), '{SAMPLE_SUB_MCHID}', o.sub_mchid), "
                           f"'{SAMPLE_UUID}', CAST(gen_random_uuid() AS text)) AS p{number}")
        return (f"SELECT {', '.join(columns)}\n"
                f"  FROM nextval('bench_seq') AS n,\n"
                f"       LATERAL (SELECT CAST({SUB_MCHID_BASE} + n % :stores AS text) AS sub_mchid,\n"
                f"                       'B' || n AS out_trade_no,\n"
                f"                       '4200' || lpad(CAST(n AS text), 24, '0') AS transaction_id) AS o")

    def next_order_for_python(self) -> tuple[str, list[str]]:
        """NEXT_ORDER as pgbench -M prepared turns it into: each `:var` becomes `$i` in order."""
        names: list[str] = []

        def number(match: re.Match) -> str:
            names.append(match.group(1))
            return f"${len(names)}"

        sql = re.sub(r":([a-z][a-z0-9_]*)", number, self.next_order_template)
        # asyncpg sends typed values where pgbench sends text; `stores` is the one number.
        return sql, [int(self.constants[name]) if name == "stores" else self.constants[name] for name in names]

    def pgbench_script(self) -> str:
        apply_sql = re.sub(r"\$(\d+)", r":p\1", self.apply_sql.strip())
        next_order = " ".join(self.next_order_template.split())
        return f"{next_order} \\gset\n{apply_sql};\n"


async def capture_apply(svc: Services, row: dict, trade: ChannelTrade) -> tuple[str, tuple]:
    recorder = RecordingConnection()
    await payments._apply(svc, recorder, row, trade)
    assert len(recorder.calls) == 1, f"_apply made {len(recorder.calls)} calls; the benchmark expects one"
    return recorder.calls[0]


# -- setup -------------------------------------------------------------------------------

async def set_up(database_url: str, settings: Settings, stores: int, profit_sharing: bool,
                 issuing: bool = False) -> dict:
    """Mall, stores and a client through onboarding, and the order sequence; returns what
    the orders and `_apply`'s arguments are built from."""
    pool = await create_pool(database_url, min_size=1, max_size=2, statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    try:
        svc = database_services(settings, pool)
        await onboarding.ensure_mall(pool, settings.sp_mchid, settings.sp_appid, settings.mall_name)
        for index in range(stores):
            await onboarding.create_tenant(svc, Tenant(
                mall_id=settings.sp_mchid, sub_mchid=str(SUB_MCHID_BASE + index), name=f"Bench store {index}",
                floor="1F", category="bench", sub_appid=None, contract=onboarding.contract_of()))
        client = parse_new_client({"role": "mall_app", "name": "bench", "public_key": signing.public_key_pem(
            signing.generate_private_key().public_key()).decode()})
        created = await onboarding.create_client(svc, settings.sp_mchid, client)
        await pool.execute(CREATE_SEQUENCE)
    finally:
        await pool.close()
    return {"client_id": created.client_id, "fee_rate_bps": onboarding.CONTRACT_DEFAULTS["fee_rate_bps"],
            "profit_sharing": profit_sharing, "stores": stores, "issuing": issuing}


async def derive_shape(settings: Settings, context: dict) -> Shape:
    """Capture one `_apply` call for a sample order and derive both sides' statements."""
    now = datetime.now(timezone.utc)
    row = order_row(settings, context["client_id"], SAMPLE_SUB_MCHID, SAMPLE_OUT_TRADE_NO,
                    context["fee_rate_bps"], context["profit_sharing"], now)
    trade = channel_trade(settings, SAMPLE_SUB_MCHID, SAMPLE_OUT_TRADE_NO, SAMPLE_TRANSACTION_ID, now)
    query, args = await capture_apply(bench_services(settings, context["issuing"]), row, trade)
    return Shape(query, args, context["stores"])


def bench_services(settings: Settings, issuing: bool) -> Services:
    """What `_apply` reads: settings, the clock and the process's coupon state. The channel
    and identity are not touched. `issuing`: the process does not yet know the live
    campaigns, so every payment may be rewarded and writes an issuing intent with its
    notification held; otherwise it knows there is none, as in a mall without coupons
    (the legacy function predates coupons)."""
    return Services(settings=settings, pool=None, channel=None, clock=lambda: datetime.now(timezone.utc),
                    identity=None, coupons=CouponRuntime(campaigns=None if issuing else []))


async def top_up_orders(database_url: str, settings: Settings, context: dict, stores: int, count: int) -> None:
    """Make sure `count` NOTPAY orders lie ahead of the sequence."""
    conn = await create_pool(database_url, min_size=1, max_size=1, statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    try:
        next_n = await conn.fetchval("SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END "
                                     "FROM bench_seq")
        made_to = await conn.fetchval("SELECT coalesce(max(CAST(substr(out_trade_no, 2) AS bigint)), $1 - 1) "
                                      "FROM orders WHERE out_trade_no LIKE 'B%'", SEQUENCE_START)
        if made_to - next_n + 1 >= count:
            return
        await conn.execute(INSERT_ORDERS, settings.sp_mchid, SUB_MCHID_BASE, stores, context["client_id"],
                           settings.sp_appid, TOTAL_FEN, SHOPPER, NOTIFY_URL, context["profit_sharing"],
                           context["fee_rate_bps"], made_to + 1, next_n + count)
        await conn.execute("VACUUM ANALYZE orders")
    finally:
        await conn.close()


async def self_check(database_url: str, settings: Settings, context: dict, shape: Shape) -> None:
    """For one order, every argument pgbench sends equals what _apply sends (times and
    the notification uuid aside: both are fresh per call on each side)."""
    sql, params = shape.next_order_for_python()
    conn = await create_pool(database_url, min_size=1, max_size=1, statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    try:
        pick = await conn.fetchrow(sql, *params)
    finally:
        await conn.close()
    now = datetime.now(timezone.utc)
    row = order_row(settings, context["client_id"], pick["sub_mchid"], pick["out_trade_no"],
                    context["fee_rate_bps"], context["profit_sharing"], now)
    _, args = await capture_apply(bench_services(settings, context["issuing"]), row, channel_trade(
        settings, pick["sub_mchid"], pick["out_trade_no"], pick["transaction_id"], now))
    for number, value in enumerate(args, start=1):
        if isinstance(value, (datetime, uuid.UUID)):
            continue
        theirs = pick[f"p{number}"] if number in shape.templates else shape.constants[f"p{number}"]
        ours = as_pg_text(value)
        assert _timeless(theirs) == _timeless(ours), f"argument ${number}: pgbench would send {theirs!r}, _apply sends {ours!r}"


def _timeless(text: str) -> str:
    """`text` with every RFC 3339 time and every uuid replaced by a marker: both are fresh
    per call on each side."""
    return UUID_RE.sub("<uuid>", TIME_RE.sub("<time>", text))
