"""Statements and balances at an instant: read from one consistent snapshot of the ledger
(REPEATABLE READ, read only), so payments landing meanwhile never tear a statement."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import date, datetime, timezone

from gateway.domain_errors import NotFound
from gateway.repo import tenants as tenants_repo
from ledger import repo as ledger_repo
from ledger.statements import (COLUMNS, LedgerTransfer, RenderedStatement, Statement, build_statement,
                               period_bounds, rendered_statement)

ALL_TIME = datetime.max.replace(tzinfo=timezone.utc)


async def statement(svc, mall_id: str, sub_mchid: str, from_on: date, to_on: date, *,
                    visible: bool = True) -> Statement:
    """The store's statement for China-time days from_on..to_on. A missing store, and
    one the caller may not see (`visible` False), are both RESOURCE_NOT_EXISTS after the
    same lookup, so the answer never tells them apart."""
    from_at, to_at = period_bounds(from_on, to_on)
    async with svc.pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            names = await _visible_store_accounts(conn, mall_id, sub_mchid, visible)
            rows = await ledger_repo.statement_transfers(conn, mall_id, sub_mchid, names, from_at, to_at)
            opening, closing = await ledger_repo.balances_at_two_instants(conn, mall_id, names, from_at, to_at)
    transfers = [_transfer(r) for r in rows]
    return build_statement(sub_mchid=sub_mchid, from_on=from_on, to_on=to_on, transfers=transfers,
                           opening_fen=opening, closing_fen=closing)


async def statements_of_all_stores(svc, mall_id: str, from_on: date, to_on: date) -> list[Statement]:
    """Every store's statement for China-time days from_on..to_on, ordered by sub_mchid, from
    one snapshot and one pass over the period's transfers (what a daily job wants): each is
    the statement `statement` builds for that store."""
    from_at, to_at = period_bounds(from_on, to_on)
    async with svc.pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            stores = await _all_stores(conn, mall_id)
            names = await ledger_repo.all_store_accounts(conn, mall_id)
            rows = await ledger_repo.statement_transfers_all_stores(conn, mall_id, from_at, to_at)
            opening, closing = await ledger_repo.balances_at_two_instants(conn, mall_id, names, from_at, to_at)
    transfers: dict[str, list[LedgerTransfer]] = {store: [] for store in stores}
    for r in rows:
        if r["sub_mchid"] in transfers:
            transfers[r["sub_mchid"]].append(_transfer(r))
    accounts: dict[str, list[str]] = {store: [] for store in stores}
    for name in names:
        store = name.split(":", 2)[1]
        if store in accounts:
            accounts[store].append(name)
    return [build_statement(sub_mchid=store, from_on=from_on, to_on=to_on, transfers=transfers[store],
                            opening_fen={a: opening[a] for a in accounts[store] if a in opening},
                            closing_fen={a: closing[a] for a in accounts[store] if a in closing})
            for store in sorted(stores)]


_TENANT_PAGE = 1000


async def _visible_store_accounts(conn, mall_id: str, sub_mchid: str, visible: bool) -> list[str]:
    """The store's ledger account names; a missing store and one the caller may not see are
    both RESOURCE_NOT_EXISTS after the same lookup."""
    if await tenants_repo.tenant(conn, mall_id, sub_mchid) is None or not visible:
        raise NotFound("tenant")
    return await ledger_repo.store_accounts(conn, mall_id, sub_mchid)


async def _all_stores(conn, mall_id: str) -> list[str]:
    """Every store's sub_mchid in the mall, read page by page on `conn`."""
    stores: list[str] = []
    while page := (await tenants_repo.tenants(conn, mall_id, _TENANT_PAGE, len(stores)))[0]:
        stores += [tenant.sub_mchid for tenant in page]
    return stores


async def rendered(svc, mall_id: str, sub_mchid: str, from_on: date, to_on: date, *, visible: bool = True,
                   csv: bool = False, json: bool = False) -> RenderedStatement:
    """The statement `statement` builds, with its lines written out by the database in the
    asked formats (ledger.statement_formats.rendered_csv / rendered_json_bytes give the same
    bytes as for `statement`'s answer). Same refusals as `statement`."""
    assert csv or json, "a format"
    from_at, to_at = period_bounds(from_on, to_on)
    async with svc.pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            names = await _visible_store_accounts(conn, mall_id, sub_mchid, visible)
            rows = await ledger_repo.shaped_statement(conn, mall_id, sub_mchid, names, from_at, to_at,
                                                      csv=csv, json=json)
            if rows:  # the query read the balances too
                opening, closing = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
                opening.update(zip(rows[0]["balance_accounts"], rows[0]["opening"]))
                closing.update(zip(rows[0]["balance_accounts"], rows[0]["closing"]))
            else:
                opening, closing = await ledger_repo.balances_at_two_instants(conn, mall_id, names, from_at, to_at)
    summary, csv_lines, json_lines = _assembled(rows, csv=csv, json=json)
    return _rendered(sub_mchid, from_on, to_on, summary, csv_lines, json_lines, opening, closing)


async def rendered_of_all_stores(svc, mall_id: str, from_on: date, to_on: date, *, csv: bool = False,
                                 json: bool = False, connections: int = 1) -> list[RenderedStatement]:
    """Every store's `rendered` statement, ordered by sub_mchid, from one snapshot and one
    pass over the period (what a daily job wants). `connections` > 1 shares the stores out
    over that many connections of the pool reading the same snapshot (the period is read
    by each; the lines, most of the work, are shared out)."""
    assert csv or json, "a format"
    assert connections >= 1
    from_at, to_at = period_bounds(from_on, to_on)
    assembled: dict[str, tuple] = {}

    async def shaped(conn, share: list[str] | None) -> None:
        store_rows: list = []
        async for row in ledger_repo.shaped_statements_all_stores(conn, mall_id, from_at, to_at, csv=csv, json=json,
                                                                  stores=share):
            if row["count"] is not None and store_rows:  # the next store's summary
                assembled[store_rows[0]["store"]] = _assembled(store_rows, csv=csv, json=json)
                store_rows = []
            store_rows.append(row)
        if store_rows:
            assembled[store_rows[0]["store"]] = _assembled(store_rows, csv=csv, json=json)

    async with contextlib.AsyncExitStack() as stack:
        conn = await stack.enter_async_context(svc.pool.acquire())
        await stack.enter_async_context(conn.transaction(isolation="repeatable_read", readonly=True))
        helpers = []
        if connections > 1:
            snapshot = await ledger_repo.export_snapshot(conn)
            for _ in range(connections - 1):
                helper = await stack.enter_async_context(svc.pool.acquire())
                await stack.enter_async_context(helper.transaction(isolation="repeatable_read", readonly=True))
                await ledger_repo.use_snapshot(helper, snapshot)
                helpers.append(helper)
        stores = await _all_stores(conn, mall_id)
        names = await ledger_repo.all_store_accounts(conn, mall_id)
        if helpers:
            ordered = sorted(stores)
            await asyncio.gather(*(shaped(c, ordered[n::connections]) for n, c in enumerate([conn, *helpers])))
        else:
            await shaped(conn, None)
        opening, closing = await ledger_repo.balances_at_two_instants(conn, mall_id, names, from_at, to_at)
    accounts: dict[str, list[str]] = {store: [] for store in stores}
    for name in names:
        store = name.split(":", 2)[1]
        if store in accounts:
            accounts[store].append(name)
    empty = _assembled([], csv=csv, json=json)
    return [_rendered(store, from_on, to_on, *assembled.get(store, empty),
                      {a: opening[a] for a in accounts[store] if a in opening},
                      {a: closing[a] for a in accounts[store] if a in closing})
            for store in sorted(stores)]


def _assembled(rows, *, csv: bool, json: bool) -> tuple:
    """(summary row or None, CSV lines, JSON lines) of one store's shaped rows."""
    if not rows:
        return None, "" if csv else None, "" if json else None
    summary, lines = rows[0], rows[1:]
    assert summary["count"] == len(lines), (summary["count"], len(lines))
    return (summary, "".join([r["csv_line"] for r in lines]) if csv else None,
            ",".join([r["json_line"] for r in lines]) if json else None)


def _rendered(sub_mchid: str, from_on: date, to_on: date, summary, csv_lines: str | None, json_lines: str | None,
              opening: dict[str, int], closing: dict[str, int]) -> RenderedStatement:
    if summary is None:  # no line in the period
        return rendered_statement(sub_mchid=sub_mchid, from_on=from_on, to_on=to_on, count=0,
                                  totals_fen=dict.fromkeys(COLUMNS, 0), moved_fen={}, opening_fen=opening,
                                  closing_fen=closing, csv_lines=csv_lines, json_lines=json_lines)
    return rendered_statement(sub_mchid=sub_mchid, from_on=from_on, to_on=to_on, count=summary["count"],
                              totals_fen=dict(zip(COLUMNS, summary["totals"])),
                              moved_fen=dict(zip(summary["accounts"], summary["moved"])), opening_fen=opening,
                              closing_fen=closing, csv_lines=csv_lines, json_lines=json_lines)


def _transfer(r) -> LedgerTransfer:
    return LedgerTransfer(r["transfer_id"], r["kind"], r["ref"], r["created_at"],
                          tuple(zip(r["accounts"], r["amounts"])), r["out_trade_no"], r["transaction_id"],
                          r["split_purpose"])


async def trial_balance_at(svc, mall_id: str, at: datetime | None) -> list[tuple[str, str, int]]:
    async with svc.pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            if at is None:
                return await ledger_repo.trial_balance(conn, mall_id)
            return await ledger_repo.trial_balance_at(conn, mall_id, at)


async def balances_at(svc, mall_id: str, names: list[str], at: datetime | None) -> list[tuple[str, str, int]]:
    async with svc.pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # asyncpg sends datetime.max as PostgreSQL's 'infinity': every transfer so far.
            return await ledger_repo.balances_at(conn, mall_id, names, at or ALL_TIME)
