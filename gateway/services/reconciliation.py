"""Reconciliation of one China-time day against the channel's bills (SPEC 6).

`reconcile_day` downloads the trade bill, the profit-sharing bill and every store's
fund-flow bill of the day, books the payouts the fund-flow bills list (exactly once), and
matches every bill line against our orders, refunds, splits, split returns and payouts:
matched, missing on our side, missing on the channel's side, amount, state or fee
mismatch (ledger.reconciliation). A payment the channel has and we do not is healed
through the normal exactly-once payment path (the order is asked of the channel and
applied by payments.apply_trade); an amount or fee mismatch is only reported.

Restart-safe and safe to repeat: bills are read again, payouts are booked once, and the
day's report is replaced in one transaction (healed items are kept). The daily run is a
`jobs` row per day (`reconcile_day`), claimed by one gateway process at a time; a bill not
ready yet raises a retryable ChannelError, so the job is retried later.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Callable

import structlog

from gateway.channel.bills import ChannelSplitLine, ChannelTradeLine, SplitLineKind, TradeLineKind
from gateway.repo import bills as repo
from gateway.repo import orders as orders_repo
from gateway.services import payments, payouts
from gateway.services.context import Services
from gateway.shapes.bills import day_window
from gateway.wire import CHINA_TZ, to_wechat_time
from ledger.payments import channel_fee_fen
from ledger.reconciliation import Bill, Finding, Item, Line, match

log = structlog.get_logger(__name__)
RECONCILE_DAY = "reconcile_day"
JOB_STORE = "mall"  # the jobs ref is "store/key"; a day's run belongs to the whole mall
PLAN_INTERVAL_S = 300  # how often each process makes sure the daily run is planned
HEAL_MAX = 1_000  # payments healed in one run; the rest wait for the next run


def china_today(now: datetime) -> date:
    return now.astimezone(CHINA_TZ).date()


async def reconcile_day(svc: Services, mall_id: str, bill_on: date) -> dict:
    """Run the day's reconciliation; returns the report's summary."""
    trade_lines = await svc.channel.trade_lines(bill_on)
    split_lines = await svc.channel.split_lines(bill_on)
    payout_lines = await payouts.payout_lines_of_day(svc, mall_id, bill_on)
    async with svc.pool.acquire() as conn:
        await repo.start_report(conn, mall_id, bill_on, svc.clock())
    booking = await payouts.book(svc, mall_id, payout_lines)
    return await match_day(svc, mall_id, bill_on, trade_lines, split_lines, payout_lines, booking)


async def match_day(svc: Services, mall_id: str, bill_on: date, trade_lines: list[ChannelTradeLine],
                    split_lines: list[ChannelSplitLine], payout_lines, booking: payouts.PayoutBooking) -> dict:
    """The matching half of `reconcile_day`, given the bills already read and payouts booked."""
    start, end = day_window(bill_on)
    async with svc.pool.acquire() as conn:
        trade = await _trade_outcome(conn, mall_id, start, end, trade_lines)
        splits = match(Bill.SPLITS, await _our_splits(conn, mall_id, start, end), map(_split_line, split_lines))
        paid_out = {r["ref"]: Line(r["ref"], r["ref"].split("/")[0], "payout", r["amount_fen"], None, "SUCCESS")
                    for r in await conn.fetch(repo.DAY_PAYOUTS, mall_id, start, end)}
        fundflow = match(Bill.FUND_FLOW, paid_out, [
            Line(f"{p.sub_mchid}/{p.payout_id}", p.sub_mchid, "payout", p.amount_fen, None, "SUCCESS")
            for p in payout_lines])
    items = [_row(item) for outcome in (trade, splits, fundflow) for item in outcome.items]
    refused = {f"{p.sub_mchid}/{p.payout_id}" for p in booking.refused}
    for row in items:
        if row["ref"] in refused and row["class"] == Finding.MISSING_OURS.value:
            row["what"] = "the channel paid out more than the store's available balance in our books"
            row["action"] = ("find the money our books miss for this store (an unfreeze or payment not yet known), "
                             "then run the reconciliation again; the payout is booked once it fits")
    await _heal(svc, mall_id, items)
    counts = {"trade": trade.counts(), "profitsharing": splits.counts(), "fundflow": fundflow.counts()}
    bills = {"trade": len(trade_lines), "profitsharing": len(split_lines), "fundflow": len(payout_lines),
             "payouts_booked": booking.booked, "payouts_already_booked": booking.already_booked}
    async with svc.pool.acquire() as conn, conn.transaction():
        await repo.finish_report(conn, mall_id, bill_on, items, bills, counts, svc.clock())
    log.info("reconciled", bill_on=bill_on.isoformat(), discrepancies=len(items))
    return {"date": bill_on.isoformat(), "bills": bills, "counts": counts}


# -- the trade bill ---------------------------------------------------------------------

async def _trade_outcome(conn, mall_id: str, start: datetime, end: datetime, lines: list[ChannelTradeLine]):
    ours: dict[str, Line] = {}
    for r in await conn.fetch(repo.DAY_PAYMENTS, mall_id, start, end):
        fee = r["fee_fen"] if r["fee_fen"] is not None else channel_fee_fen(r["total_fen"], r["fee_rate_bps"])
        ref = f"{r['sub_mchid']}/{r['out_trade_no']}"
        ours[ref] = Line(ref, r["sub_mchid"], "payment", r["total_fen"], fee, "SUCCESS")
    for r in await conn.fetch(repo.DAY_REFUNDS, mall_id, start, end):
        ref = f"{r['sub_mchid']}/refund/{r['out_refund_no']}"
        ours[ref] = Line(ref, r["sub_mchid"], "refund", r["amount_fen"], -(r["fee_back_fen"] or 0), r["state"])
    theirs = [_trade_line(line) for line in lines]
    # A line of this day that our books hold on another day, or in another state, is still ours.
    unknown_refunds = [l for l in lines if l.kind is TradeLineKind.REFUND
                       and f"{l.sub_mchid}/refund/{l.out_refund_no}" not in ours]
    for r in await conn.fetch(repo.REFUND_STATES, mall_id, [l.sub_mchid for l in unknown_refunds],
                              [l.out_refund_no for l in unknown_refunds]):
        ref = f"{r['sub_mchid']}/refund/{r['out_refund_no']}"
        ours[ref] = Line(ref, r["sub_mchid"], "refund", r["amount_fen"], -(r["fee_back_fen"] or 0), r["state"])
    unknown_payments = {f"{l.sub_mchid}/{l.out_trade_no}": l for l in lines
                        if l.kind is TradeLineKind.PAYMENT and f"{l.sub_mchid}/{l.out_trade_no}" not in ours}
    for r in await conn.fetch(repo.ORDER_STATES, mall_id, [l.sub_mchid for l in unknown_payments.values()],
                              [l.out_trade_no for l in unknown_payments.values()]):
        if r["state"] == "SUCCESS":  # paid on a neighbouring day in our books: compare all the same
            ref = f"{r['sub_mchid']}/{r['out_trade_no']}"
            fee = channel_fee_fen(r["total_fen"], r["fee_rate_bps"])
            ours[ref] = Line(ref, r["sub_mchid"], "payment", r["total_fen"], fee, "SUCCESS")
    return match(Bill.TRADE, ours, theirs)


def _trade_line(line: ChannelTradeLine) -> Line:
    if line.kind is TradeLineKind.REFUND:
        return Line(f"{line.sub_mchid}/refund/{line.out_refund_no}", line.sub_mchid, "refund", line.amount_fen,
                    line.fee_fen, line.state)
    return Line(f"{line.sub_mchid}/{line.out_trade_no}", line.sub_mchid, "payment", line.amount_fen, line.fee_fen,
                line.state)


# -- the profit-sharing bill ------------------------------------------------------------

async def _our_splits(conn, mall_id: str, start: datetime, end: datetime) -> dict[str, Line]:
    ours: dict[str, Line] = {}
    for r in await conn.fetch(repo.DAY_SPLITS, mall_id, start, end):
        if r["kind"] == "unfreeze":
            ref = f"{r['sub_mchid']}/unfreeze/{r['out_order_no']}"
            ours[ref] = Line(ref, r["sub_mchid"], "unfreeze", None, None, "SUCCESS")
            continue
        for receiver in (r["result"] or {}).get("receivers", []):
            if receiver.get("result") == "SUCCESS":
                ref = f"{r['sub_mchid']}/{r['out_order_no']}/{receiver['account']}"
                ours[ref] = Line(ref, r["sub_mchid"], "split", receiver["amount"], None, "SUCCESS")
    for r in await conn.fetch(repo.DAY_RETURNS, mall_id, start, end):
        ref = f"{r['sub_mchid']}/return/{r['out_return_no']}"
        ours[ref] = Line(ref, r["sub_mchid"], "return", r["amount_fen"], None, "SUCCESS")
    return ours


def _split_line(line: ChannelSplitLine) -> Line:
    if line.kind is SplitLineKind.RETURN:
        return Line(f"{line.sub_mchid}/return/{line.out_order_no}", line.sub_mchid, "return", line.amount_fen,
                    None, line.state)
    if line.kind is SplitLineKind.UNFREEZE:
        return Line(f"{line.sub_mchid}/unfreeze/{line.out_order_no}", line.sub_mchid, "unfreeze", None, None,
                    line.state)
    return Line(f"{line.sub_mchid}/{line.out_order_no}/{line.receiver}", line.sub_mchid, "split", line.amount_fen,
                None, line.state)


# -- healing and the report -------------------------------------------------------------

async def _heal(svc: Services, mall_id: str, items: list[dict]) -> None:
    """Payments the channel has and our books do not: ask the channel about the order and
    apply it through the normal exactly-once path. Only orders we created can be healed."""
    candidates = [row for row in items if row["bill"] == "trade" and row["class"] == Finding.MISSING_OURS.value
                  and "/refund/" not in row["ref"]][:HEAL_MAX]
    for row in candidates:
        sub_mchid, _, out_trade_no = row["ref"].partition("/")
        async with svc.pool.acquire() as conn:
            order = await orders_repo.order(conn, mall_id, sub_mchid, out_trade_no)
        if order is None:
            row["what"] += "; the gateway never created this order"
            continue
        fresh = await payments.sync_with_channel(svc, order)
        if fresh is not None and fresh["state"] == "SUCCESS":
            row["healed"] = True
            row["what"] += "; healed: the gateway asked the channel and applied the payment exactly once"
            row["action"] = "nothing: the order is paid in our books now, and its mall was notified"


def _row(item: Item) -> dict:
    return {
        "bill": item.bill.value, "class": item.finding.value, "ref": item.ref, "sub_mchid": item.sub_mchid,
        "ours": json.dumps(item.ours.as_json()) if item.ours else None,
        "channel": json.dumps(item.channel.as_json()) if item.channel else None,
        "what": item.what, "action": item.action, "healed": False,
    }


def summary_json(report, time_text: Callable[[datetime], str] = datetime.isoformat) -> dict:
    """A day's report without its items; times as `time_text` writes them (the API in
    WeChat's format, the command line in ISO 8601)."""
    return {
        "date": report["bill_on"].isoformat(), "state": report["state"], "runs": report["runs"],
        "bills": report["bills"], "counts": report["counts"],
        "started_at": time_text(report["started_at"]),
        "finished_at": time_text(report["finished_at"]) if report["finished_at"] else None,
    }


def report_json(report, items, time_text: Callable[[datetime], str] = datetime.isoformat) -> dict:
    return {**summary_json(report, time_text), "discrepancies": [{
        "bill": i["bill"], "class": i["class"], "ref": i["ref"], "sub_mchid": i["sub_mchid"],
        "ours": i["ours"], "channel": i["channel"], "what": i["what"], "action": i["action"],
        "healed": i["healed_at"] is not None,
    } for i in items]}


async def reports(svc: Services, mall_id: str, bill_on: date | None, limit: int, offset: int) -> dict:
    """The reports, newest first (of one day when `bill_on` is given), for the API."""
    async with svc.pool.acquire() as conn:
        rows = await repo.reports(conn, mall_id, bill_on, limit, offset)
    return {"offset": offset, "limit": limit, "data": [summary_json(r, to_wechat_time) for r in rows]}


async def reconcile_and_report(svc: Services, mall_id: str, bill_on: date, items_max: int) -> dict | None:
    """Run the day now (`reconcile_day`), then its report as `report` gives it."""
    await reconcile_day(svc, mall_id, bill_on)
    return await report(svc, mall_id, bill_on, items_max)


async def report(svc: Services, mall_id: str, bill_on: date, items_max: int) -> dict | None:
    """One day's report with up to `items_max` discrepancies, for the API; None before a run."""
    async with svc.pool.acquire() as conn:
        row = await repo.report(conn, mall_id, bill_on)
        if row is None:
            return None
        items = await repo.items(conn, mall_id, bill_on, items_max, 0)
    return report_json(row, items, to_wechat_time)


# -- the daily run ------------------------------------------------------------------------

async def plan_daily(svc: Services) -> None:
    """Make sure yesterday's run (China time) exists as a job, due after its bills are ready."""
    if not svc.settings.reconcile_daily:
        return
    now = svc.clock()
    today = china_today(now)
    due_at = day_window(today)[0] + timedelta(minutes=svc.settings.reconcile_at_minute)
    async with svc.pool.acquire() as conn:
        await repo.plan_day(conn, svc.settings.sp_mchid, RECONCILE_DAY,
                            f"{JOB_STORE}/{(today - timedelta(days=1)).isoformat()}", due_at, now)


async def run_job(svc: Services, mall_id: str, store: str, day_text: str) -> bool:
    assert store == JOB_STORE, store
    await reconcile_day(svc, mall_id, date.fromisoformat(day_text))
    return True

