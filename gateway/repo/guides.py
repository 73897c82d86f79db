"""Shopping guides, split receivers and high-ratio approvals."""

from __future__ import annotations

from datetime import datetime

INSERT_GUIDE = """
INSERT INTO guides (mall_id, guide_id, sub_mchid, openid, name, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING
RETURNING *
"""

GUIDE = "SELECT * FROM guides WHERE mall_id = $1 AND guide_id = $2"

# A guide's debt is read and recovered under this lock: reward jobs of one guide (two
# orders, maybe two processes) decide one after the other, never on the same debt.
LOCK_GUIDE = "SELECT guide_id FROM guides WHERE mall_id = $1 AND guide_id = $2 FOR UPDATE"

GUIDE_BY_OPENID = "SELECT * FROM guides WHERE mall_id = $1 AND sub_mchid = $2 AND openid = $3"

GUIDES = "SELECT * FROM guides WHERE mall_id = $1 ORDER BY guide_id LIMIT $2 OFFSET $3"

INSERT_RECEIVER = """
INSERT INTO receivers (mall_id, sub_mchid, type, account, relation_type, ledger_account, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (mall_id, sub_mchid, type, account) DO UPDATE SET deleted_at = NULL
RETURNING *
"""

RECEIVER = """
SELECT * FROM receivers WHERE mall_id = $1 AND sub_mchid = $2 AND type = $3 AND account = $4
   AND deleted_at IS NULL
"""

DELETE_RECEIVER = """
UPDATE receivers SET deleted_at = $5
 WHERE mall_id = $1 AND sub_mchid = $2 AND type = $3 AND account = $4 AND deleted_at IS NULL
RETURNING *
"""

INSERT_APPROVAL = """
INSERT INTO ratio_approvals (mall_id, sub_mchid, approved_by, approved_at, reason, max_ratio_bps, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *
"""

APPROVALS = "SELECT * FROM ratio_approvals WHERE mall_id = $1 AND sub_mchid = $2 ORDER BY approval_id"

SET_TENANT_CAP = """
UPDATE tenants SET max_ratio_bps = $3, approval_id = $4 WHERE mall_id = $1 AND sub_mchid = $2
RETURNING *
"""


async def insert_guide(conn, mall_id, guide_id, sub_mchid, openid, name, created_at: datetime):
    return await conn.fetchrow(INSERT_GUIDE, mall_id, guide_id, sub_mchid, openid, name, created_at)


async def guide(conn, mall_id: str, guide_id: str):
    return await conn.fetchrow(GUIDE, mall_id, guide_id)


async def lock_guide(conn, mall_id: str, guide_id: str) -> None:
    """Inside the caller's transaction: hold the guide's row until it ends."""
    await conn.fetchval(LOCK_GUIDE, mall_id, guide_id)


async def guide_by_openid(conn, mall_id: str, sub_mchid: str, openid: str):
    return await conn.fetchrow(GUIDE_BY_OPENID, mall_id, sub_mchid, openid)


async def guides(conn, mall_id: str, limit: int, offset: int):
    return await conn.fetch(GUIDES, mall_id, limit, offset)


async def insert_receiver(conn, mall_id, sub_mchid, type_, account, relation_type, ledger_account, now):
    return await conn.fetchrow(INSERT_RECEIVER, mall_id, sub_mchid, type_, account, relation_type,
                               ledger_account, now)


async def receiver(conn, mall_id: str, sub_mchid: str, type_: str, account: str):
    return await conn.fetchrow(RECEIVER, mall_id, sub_mchid, type_, account)


async def delete_receiver(conn, mall_id, sub_mchid, type_, account, now):
    return await conn.fetchrow(DELETE_RECEIVER, mall_id, sub_mchid, type_, account, now)


async def insert_approval(conn, mall_id, sub_mchid, approved_by, approved_at, reason, max_ratio_bps, now):
    return await conn.fetchrow(INSERT_APPROVAL, mall_id, sub_mchid, approved_by, approved_at, reason,
                               max_ratio_bps, now)


async def approvals(conn, mall_id: str, sub_mchid: str):
    return await conn.fetch(APPROVALS, mall_id, sub_mchid)


async def set_tenant_cap(conn, mall_id, sub_mchid, max_ratio_bps, approval_id):
    return await conn.fetchrow(SET_TENANT_CAP, mall_id, sub_mchid, max_ratio_bps, approval_id)
