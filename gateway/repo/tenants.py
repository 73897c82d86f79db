"""Malls and their stores (tenants) with each store's contract."""

from __future__ import annotations

from dataclasses import dataclass, fields

from splitting.rules import Contract

ENSURE_MALL = """
INSERT INTO malls (mall_id, sp_appid, name) VALUES ($1, $2, $3)
ON CONFLICT (mall_id) DO NOTHING
"""

MALL = "SELECT mall_id, sp_appid, name FROM malls WHERE mall_id = $1"

INSERT_TENANT = """
INSERT INTO tenants (mall_id, sub_mchid, name, floor, category, sub_appid, commission_bps,
                     max_ratio_bps, fee_rate_bps, freeze_days, guide_reward_bps, auto_split)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (mall_id, sub_mchid) DO NOTHING
RETURNING *
"""

# The terms that are not the cap (the cap changes only with an approval record).
UPDATE_CONTRACT = """
UPDATE tenants SET commission_bps = $3, fee_rate_bps = $4, freeze_days = $5, guide_reward_bps = $6,
                   auto_split = $7
 WHERE mall_id = $1 AND sub_mchid = $2
RETURNING *
"""

TENANT = "SELECT * FROM tenants WHERE mall_id = $1 AND sub_mchid = $2"

TENANTS = "SELECT * FROM tenants WHERE mall_id = $1 ORDER BY sub_mchid LIMIT $2 OFFSET $3"

TENANT_COUNT = "SELECT count(*) FROM tenants WHERE mall_id = $1"

# The contract's terms, each a column of `tenants` (its approval is a row of its own).
CONTRACT_FIELDS = tuple(f.name for f in fields(Contract) if f.name != "approval")


@dataclass(frozen=True, slots=True)
class Tenant:
    mall_id: str
    sub_mchid: str
    name: str
    floor: str
    category: str
    sub_appid: str | None
    contract: Contract

    def as_json(self) -> dict:
        return {
            "sub_mchid": self.sub_mchid, "name": self.name, "floor": self.floor,
            "category": self.category, "sub_appid": self.sub_appid,
            "contract": {name: getattr(self.contract, name) for name in CONTRACT_FIELDS},
        }


def _tenant(row) -> Tenant:
    return Tenant(mall_id=row["mall_id"], sub_mchid=row["sub_mchid"], name=row["name"], floor=row["floor"],
                  category=row["category"], sub_appid=row["sub_appid"],
                  contract=Contract(**{name: row[name] for name in CONTRACT_FIELDS}))


async def ensure_mall(conn, mall_id: str, sp_appid: str, name: str) -> None:
    await conn.execute(ENSURE_MALL, mall_id, sp_appid, name)


async def mall(conn, mall_id: str):
    return await conn.fetchrow(MALL, mall_id)


async def insert_tenant(conn, tenant: Tenant) -> Tenant | None:
    """None when the store is already onboarded."""
    terms = tenant.contract
    row = await conn.fetchrow(
        INSERT_TENANT, tenant.mall_id, tenant.sub_mchid, tenant.name, tenant.floor,
        tenant.category, tenant.sub_appid, terms.commission_bps, terms.max_ratio_bps,
        terms.fee_rate_bps, terms.freeze_days, terms.guide_reward_bps, terms.auto_split,
    )
    return None if row is None else _tenant(row)


async def update_contract(conn, mall_id: str, sub_mchid: str, terms: Contract) -> Tenant | None:
    """Every term but the cap (UPDATE_CONTRACT)."""
    row = await conn.fetchrow(UPDATE_CONTRACT, mall_id, sub_mchid, terms.commission_bps, terms.fee_rate_bps,
                              terms.freeze_days, terms.guide_reward_bps, terms.auto_split)
    return None if row is None else _tenant(row)


async def tenant_for_update(conn, mall_id: str, sub_mchid: str) -> Tenant | None:
    row = await conn.fetchrow(TENANT + " FOR UPDATE", mall_id, sub_mchid)
    return None if row is None else _tenant(row)


async def tenant(conn, mall_id: str, sub_mchid: str) -> Tenant | None:
    row = await conn.fetchrow(TENANT, mall_id, sub_mchid)
    return None if row is None else _tenant(row)


async def tenants(conn, mall_id: str, limit: int, offset: int) -> tuple[list[Tenant], int]:
    rows = await conn.fetch(TENANTS, mall_id, limit, offset)
    total = await conn.fetchval(TENANT_COUNT, mall_id)
    return [_tenant(r) for r in rows], total
