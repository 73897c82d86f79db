"""Statements and balances at an instant: read from one consistent snapshot of the ledger
(REPEATABLE READ, read only), so payments landing meanwhile never tear a statement."""

from __future__ import annotations

from datetime import date, datetime, timezone

from gateway.domain_errors import InvalidField, NotFound
from gateway.repo import tenants as tenants_repo
from ledger import repo as ledger_repo
from ledger.statements import LedgerTransfer, PeriodError, Statement, build_statement, period_bounds

ALL_TIME = datetime.max.replace(tzinfo=timezone.utc)


async def statement(pool, mall_id: str, sub_mchid: str, from_on: date, to_on: date, *,
                    visible: bool = True) -> Statement:
    """The store's statement for China-time days from_on..to_on. A missing store, and
    one the caller may not see (`visible` False), are both RESOURCE_NOT_EXISTS after the
    same lookup, so the answer never tells them apart."""
    try:
        from_at, to_at = period_bounds(from_on, to_on)
    except PeriodError as error:
        raise InvalidField("to", str(error), "to is on or after date, at most 31 days on") from None
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            if await tenants_repo.tenant(conn, mall_id, sub_mchid) is None or not visible:
                raise NotFound("tenant")
            names = await ledger_repo.store_accounts(conn, mall_id, sub_mchid)
            rows = await ledger_repo.statement_transfers(conn, mall_id, sub_mchid, names, from_at, to_at)
            opening, closing = await ledger_repo.balances_at_two_instants(conn, mall_id, names, from_at, to_at)
    transfers = [_transfer(r) for r in rows]
    return build_statement(sub_mchid=sub_mchid, from_on=from_on, to_on=to_on, transfers=transfers,
                           opening_fen=opening, closing_fen=closing)


async def statements_of_all_stores(pool, mall_id: str, from_on: date, to_on: date) -> list[Statement]:
    """Every store's statement for China-time days from_on..to_on, ordered by sub_mchid, from
    one snapshot and one pass over the period's transfers (what a daily job wants): each is
    the statement `statement` builds for that store."""
    try:
        from_at, to_at = period_bounds(from_on, to_on)
    except PeriodError as error:
        raise InvalidField("to", str(error), "to is on or after date, at most 31 days on") from None
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            stores: list[str] = []
            while page := (await tenants_repo.tenants(conn, mall_id, _TENANT_PAGE, len(stores)))[0]:
                stores += [tenant.sub_mchid for tenant in page]
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


def _transfer(r) -> LedgerTransfer:
    return LedgerTransfer(r["transfer_id"], r["kind"], r["ref"], r["created_at"],
                          tuple(zip(r["accounts"], r["amounts"])), r["out_trade_no"], r["transaction_id"],
                          r["split_purpose"])


async def trial_balance_at(pool, mall_id: str, at: datetime | None) -> list[tuple[str, str, int]]:
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            if at is None:
                return await ledger_repo.trial_balance(conn, mall_id)
            return await ledger_repo.trial_balance_at(conn, mall_id, at)


async def balances_at(pool, mall_id: str, names: list[str], at: datetime | None) -> list[tuple[str, str, int]]:
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # asyncpg sends datetime.max as PostgreSQL's 'infinity': every transfer so far.
            return await ledger_repo.balances_at(conn, mall_id, names, at or ALL_TIME)
