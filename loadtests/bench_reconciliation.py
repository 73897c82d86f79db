"""Benchmark: payouts and reconciliation of a busy mall's day (SPEC 6 scale target).

Builds the day directly in a fresh database: 200 stores, 100,000 paid orders (30% with
profit sharing and a finished commission split each, 5% of the rest half refunded), the
payments in the ledger; and the channel's bills of the same day as WeChat writes them
(gateway.shapes.bills), with a few lines dropped, added and altered. Then it times, with
the gateway's own services:

  payouts         every store's fund-flow bill read (parsed) and its payout booked
  reconciliation  the whole `reconcile_day`: trade bill (~102,000 lines), profit-sharing
                  bill (~30,000 lines) and 200 fund-flow bills parsed, payouts booked again
                  (each found already booked), every line matched, the report stored

The channel here hands over the bill bytes from memory: the time measured is the
gateway's (parse, match, database), not the download. Target: under 10 s each.

    python loadtests/bench_reconciliation.py [--orders 100000 --stores 200] [--database-url DSN]

Without --database-url the embedded PostgreSQL under loadtests/out/data is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import ExitStack
from datetime import date, datetime, timedelta

from stack import fresh_database, start_postgres

from gateway.app import database_services
from gateway.invariants import check_invariants
from gateway.channel import bills as tf_bills
from gateway.db import create_pool
from gateway.db.migrate import migrate
from gateway.repo.tenants import Tenant
from gateway.services import onboarding, payouts, reconciliation
from gateway.services.context import Services
from gateway.settings import Settings
from gateway.shapes import bills as shapes
from gateway.wire import CHINA_TZ
from ledger.payments import channel_fee_fen

DATABASE = "mallpay_bench_reconciliation"
DAY = date(2026, 11, 2)
FEE_BPS = 60
SECONDS_APART = 0.8  # 100,000 orders over 22 hours of the day
TAMPERED_PER_CLASS = 10
MONEY_INVARIANTS = ("transfer_unbalanced", "currency_not_zero", "bound_broken", "stored_balance_differs",
                    "entry_on_unknown_account")

INSERT_ORDERS = """
INSERT INTO orders (mall_id, sub_mchid, out_trade_no, client_id, request_hash, sp_appid, description, total_fen,
                    currency, payer_sp_openid, notify_url, profit_sharing, fee_rate_bps, time_expire, state,
                    transaction_id, payer_total_fen, bank_type, created_at, success_at, next_check_at, prepay_id)
SELECT $1, ($2::text[])[1 + i % $3], 'B' || lpad(i::text, 10, '0'), 'bench', 'x', $4, 'bench goods',
       100 + (i * 7919) % 50000, 'CNY', 'oBenchPayer', 'https://mall.example/notify', i % 10 < 3, $5,
       $6::timestamptz + make_interval(secs => i * $7) + interval '2 hours', 'SUCCESS',
       '4200' || lpad(i::text, 24, '0'), 100 + (i * 7919) % 50000, 'OTHERS',
       $6::timestamptz + make_interval(secs => i * $7), $6::timestamptz + make_interval(secs => i * $7),
       $6::timestamptz + make_interval(secs => i * $7), 'wx' || i
  FROM generate_series(1, $8) AS i
"""

INSERT_SPLITS = """
INSERT INTO split_orders (mall_id, sub_mchid, out_order_no, out_trade_no, transaction_id, kind, purpose,
                          request_hash, parts, state, order_id, result, created_at, finished_at)
SELECT o.mall_id, o.sub_mchid, 'CM' || o.transaction_id, o.out_trade_no, o.transaction_id, 'split', 'commission',
       'x', jsonb_build_array(jsonb_build_object('type', 'MERCHANT_ID', 'account', o.mall_id,
                                                 'amount', o.total_fen * 5 / 100, 'description', '商场佣金')),
       'FINISHED', '3008' || substr(o.transaction_id, 5),
       jsonb_build_object('receivers', jsonb_build_array(jsonb_build_object(
           'type', 'MERCHANT_ID', 'account', o.mall_id, 'amount', o.total_fen * 5 / 100, 'result', 'SUCCESS',
           'description', '商场佣金', 'detail_id', '3601' || substr(o.transaction_id, 5)))),
       o.success_at + interval '2 minutes', o.success_at + interval '2 minutes'
  FROM orders o WHERE o.mall_id = $1 AND o.profit_sharing
"""

INSERT_REFUNDS = """
INSERT INTO refunds (mall_id, sub_mchid, out_refund_no, out_trade_no, transaction_id, amount_fen, total_fen,
                     request_hash, plan, state, refund_id, client_id, created_at, success_at)
SELECT o.mall_id, o.sub_mchid, 'R' || o.out_trade_no, o.out_trade_no, o.transaction_id, o.total_fen / 2,
       o.total_fen, 'x',
       jsonb_build_object('fee_back_fen', ((o.total_fen * $2 + 5000) / 10000) * (o.total_fen / 2) / o.total_fen),
       'SUCCESS', '5000' || substr(o.transaction_id, 5), 'bench', o.success_at + interval '10 minutes',
       o.success_at + interval '10 minutes'
  FROM orders o
 WHERE o.mall_id = $1 AND NOT o.profit_sharing AND substr(o.out_trade_no, 2)::bigint % 20 = 1
"""

# Every order's payment transfer (to the store's frozen or available balance, as the ledger's
# payment posts it), in bulk. Splits, refunds and notifications are in their own tables but
# not in the ledger: the bench checks only the ledger's money invariants (MONEY_INVARIANTS).
INSERT_PAYMENTS = """
WITH t AS (
    INSERT INTO transfers (mall_id, kind, ref, currency, created_at)
    SELECT mall_id, 'payment', sub_mchid || '/' || out_trade_no, 'CNY', success_at FROM orders WHERE mall_id = $1
    RETURNING mall_id, transfer_id, ref)
INSERT INTO entries (mall_id, transfer_id, account, amount_fen, currency)
SELECT t.mall_id, t.transfer_id, e.account, e.amount_fen, 'CNY'
  FROM t
  JOIN orders o ON o.mall_id = t.mall_id AND o.sub_mchid = split_part(t.ref, '/', 1)
                AND o.out_trade_no = split_part(t.ref, '/', 2)
  CROSS JOIN LATERAL (VALUES
      ('payer', -o.total_fen),
      ('tenant:' || o.sub_mchid || CASE WHEN o.profit_sharing THEN ':frozen' ELSE ':available' END,
       o.total_fen - (o.total_fen * $2 + 5000) / 10000),
      ('channel:fees', (o.total_fen * $2 + 5000) / 10000)) AS e(account, amount_fen)
 WHERE e.amount_fen <> 0
"""

SET_BALANCES = """
UPDATE accounts a SET balance_fen = s.total
  FROM (SELECT account, sum(amount_fen) AS total FROM entries WHERE mall_id = $1 AND account LIKE 'tenant:%'
        GROUP BY account) s
 WHERE a.mall_id = $1 AND a.account = s.account
"""


def order_fen(i: int) -> int:
    return 100 + (i * 7919) % 50000


def bill_time(i: int, extra_s: int = 0) -> str:
    start = datetime.combine(DAY, datetime.min.time(), tzinfo=CHINA_TZ)
    return (start + timedelta(seconds=i * SECONDS_APART + extra_s)).strftime("%Y-%m-%d %H:%M:%S")


def channel_bills(mall_id: str, sp_appid: str, stores: list[str], orders: int) -> tuple[bytes, bytes, dict]:
    """What the channel's bills of the day say, built from the same rule as the database."""
    trade, splits, available = [], [], {s: 0 for s in stores}
    for i in range(1, orders + 1):
        store, fen = stores[i % len(stores)], order_fen(i)
        fee = channel_fee_fen(fen, FEE_BPS)
        out_trade_no, transaction_id = f"B{i:010d}", f"4200{i:024d}"
        row = {name: "" for name in shapes.TRADE.columns} | {
            "交易时间": bill_time(i), "公众账号ID": sp_appid, "商户号": mall_id, "特约商户号": store,
            "微信订单号": transaction_id, "商户订单号": out_trade_no, "交易类型": "JSAPI", "交易状态": "SUCCESS",
            "应结订单金额": fen, "代金券金额": 0, "微信退款单号": "0", "商户退款单号": "0", "退款金额": 0,
            "充值券退款金额": 0, "手续费": fee, "费率": "0.60%", "订单金额": fen, "申请退款金额": 0}
        trade.append(row)
        if i % 10 < 3:
            splits.append({"分账发起时间": bill_time(i, 120), "分账发起方": mall_id, "分账出资方": store,
                           "微信订单号": transaction_id, "微信分账/回退单号": f"3008{i:024d}",
                           "商户分账/回退单号": f"CM{transaction_id}", "分账明细单号": f"3601{i:024d}",
                           "分账接收方": mall_id, "分账金额": fen * 5 // 100, "业务类型": shapes.SPLIT_BUSINESS,
                           "处理状态": "SUCCESS", "分账描述": "商场佣金"})
            continue
        available[store] += fen - fee
        if i % 20 == 1:
            refund = fen // 2
            fee_back = fee * refund // fen
            trade.append(row | {"交易时间": bill_time(i, 600), "交易状态": "REFUND", "应结订单金额": 0, "订单金额": 0,
                                "微信退款单号": f"5000{i:024d}", "商户退款单号": f"R{out_trade_no}", "退款金额": refund,
                                "申请退款金额": refund, "退款状态": "SUCCESS", "手续费": -fee_back})
            available[store] -= refund - fee_back
    _tamper(trade, mall_id, stores)
    fundflow = {}
    for n, store in enumerate(stores):
        rows = [{"记账时间": f"{DAY} 06:00:00", "微信支付业务单号": f"PO{store}{DAY:%Y%m%d}{n:06d}",
                 "资金流水单号": f"FF{store}{n:06d}", "业务名称": "结算", "业务类型": shapes.PAYOUT_BUSINESS,
                 "收支类型": shapes.EXPENSE, "收支金额(元)": available[store], "账户结余(元)": 0,
                 "资金变更提交申请人": "system", "备注": "", "业务凭证号": ""}] if available[store] > 0 else []
        fundflow[store] = shapes.write_bill(shapes.FUNDFLOW, rows, shapes.summarise(shapes.FUNDFLOW, rows))
    return (shapes.write_bill(shapes.TRADE, trade, shapes.summarise(shapes.TRADE, trade), gzip_it=True),
            shapes.write_bill(shapes.PROFITSHARING, splits, shapes.summarise(shapes.PROFITSHARING, splits),
                              gzip_it=True), fundflow)


def _tamper(trade: list[dict], mall_id: str, stores: list[str]) -> None:
    """TAMPERED_PER_CLASS lines of each kind of discrepancy, so the report is not empty."""
    n = TAMPERED_PER_CLASS
    for k in range(n):
        trade[100 + k]["订单金额"] += 1
        trade[200 + k]["手续费"] += 1
        trade[300 + k]["交易状态"] = "REVOKED"
        trade.append(trade[0] | {"商户订单号": f"NOTOURS{k:04d}", "微信订单号": f"4299{k:024d}"})
    del trade[400:400 + n]


class BillsInMemory:
    """The channel's side of `reconcile_day`: bill bytes parsed by the gateway's own code."""

    def __init__(self, trade: bytes, splits: bytes, fundflow: dict[str, bytes]):
        self.trade, self.splits, self.fundflow = trade, splits, fundflow

    async def trade_lines(self, bill_on, sub_mchid=None):
        return tf_bills.trade_lines_from(shapes.parse_bill(shapes.TRADE, self.trade, columns=tf_bills.TRADE_COLUMNS))

    async def split_lines(self, bill_on, sub_mchid=None):
        return tf_bills.split_lines_from(shapes.parse_bill(shapes.PROFITSHARING, self.splits,
                                                           columns=tf_bills.SPLIT_COLUMNS))

    async def payout_lines(self, sub_mchid, bill_on):
        bill = shapes.parse_bill(shapes.FUNDFLOW, self.fundflow[sub_mchid], columns=tf_bills.FUNDFLOW_COLUMNS)
        return tf_bills.payout_lines_from(sub_mchid, bill)

    async def query_by_out_trade_no(self, sub_mchid, out_trade_no):
        return None


async def build_day(database_url: str, settings: Settings, stores: list[str], orders: int) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2, statement_timeout_ms=600_000)
    mall = settings.sp_mchid
    try:
        await onboarding.ensure_mall(pool, mall, settings.sp_appid, settings.mall_name)
        for sub_mchid in stores:
            await onboarding.create_tenant(database_services(settings, pool), Tenant(
                mall_id=mall, sub_mchid=sub_mchid, name=f"Store {sub_mchid}", floor="1F", category="bench",
                sub_appid=None, contract=onboarding.contract_of()))
        start = datetime.combine(DAY, datetime.min.time(), tzinfo=CHINA_TZ)
        async with pool.acquire() as conn:
            await conn.execute(INSERT_ORDERS, mall, stores, len(stores), settings.sp_appid, FEE_BPS, start,
                               SECONDS_APART, orders)
            await conn.execute("ANALYZE orders")
            await conn.execute(INSERT_SPLITS, mall)
            await conn.execute(INSERT_REFUNDS, mall, FEE_BPS)
            async with conn.transaction():
                await conn.execute(INSERT_PAYMENTS, mall, FEE_BPS)
                await conn.execute(SET_BALANCES, mall)
        async with pool.acquire() as conn:
            await conn.execute("ANALYZE")
    finally:
        await pool.close()


async def measure(database_url: str, settings: Settings, channel: BillsInMemory) -> dict:
    pool = await create_pool(database_url, min_size=1, max_size=4, statement_timeout_ms=600_000)
    clock = lambda: datetime.combine(DAY + timedelta(days=1), datetime.min.time(), tzinfo=CHINA_TZ) + timedelta(hours=11)  # noqa: E731
    svc = Services(settings=settings, pool=pool, channel=channel, clock=clock, identity=None)
    mall = settings.sp_mchid
    try:
        started = time.perf_counter()
        lines = await payouts.payout_lines_of_day(svc, mall, DAY)
        booking = await payouts.book(svc, mall, lines)
        payouts_s = time.perf_counter() - started
        started = time.perf_counter()
        summary = await reconciliation.reconcile_day(svc, mall, DAY)
        reconcile_s = time.perf_counter() - started
        async with pool.acquire() as conn:
            problems = [p for p in await check_invariants(conn) if p.split(":")[0] in MONEY_INVARIANTS]
    finally:
        await pool.close()
    return {"payouts_s": round(payouts_s, 2), "payouts_booked": booking.booked, "payouts_refused": len(booking.refused),
            "reconciliation_s": round(reconcile_s, 2), "report": summary, "ledger_invariant_problems": problems[:5]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--stores", type=int, default=200)
    parser.add_argument("--database-url", help="a server DSN to create the bench database on (default: embedded)")
    args = parser.parse_args()
    settings = Settings()
    stores = [f"19{n:08d}" for n in range(1, args.stores + 1)]
    with ExitStack() as stack:
        server_dsn = args.database_url or start_postgres(stack)[1]
        database_url = asyncio.run(fresh_database(server_dsn, DATABASE))
        asyncio.run(migrate(database_url))
        started = time.perf_counter()
        asyncio.run(build_day(database_url, settings, stores, args.orders))
        channel = BillsInMemory(*channel_bills(settings.sp_mchid, settings.sp_appid, stores, args.orders))
        built_s = time.perf_counter() - started
        result = asyncio.run(measure(database_url, settings, channel))
    result = {"orders": args.orders, "stores": args.stores, "build_s": round(built_s, 1),
              "trade_bill_bytes_gzip": len(channel.trade), **result}
    print(json.dumps(result, ensure_ascii=False, indent=2))
    ok = result["payouts_s"] < 10 and result["reconciliation_s"] < 10 and not result["ledger_invariant_problems"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
