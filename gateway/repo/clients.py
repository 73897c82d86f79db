"""API clients (mall apps, tenant POS, finance, admin), their keys and request nonces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.caller import Caller  # re-exported: storage builds it from a key row
from gateway.signing import Secret

CLIENT_KEY = """
SELECT c.client_id, c.mall_id, c.role, c.sub_mchid, c.apiv3_key, c.verification, k.public_key_pem, m.sp_appid
  FROM client_keys k
  JOIN clients c USING (client_id)
  JOIN malls m ON m.mall_id = c.mall_id
 WHERE k.client_id = $1 AND k.serial_no = $2 AND k.revoked_at IS NULL
"""

CLIENT_NOTIFICATION_KEYS = "SELECT apiv3_key, verification FROM clients WHERE client_id = $1"

INSERT_CLIENT = """
INSERT INTO clients (client_id, mall_id, role, sub_mchid, name, apiv3_key, verification)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""

INSERT_CLIENT_KEY = """
INSERT INTO client_keys (client_id, serial_no, public_key_pem) VALUES ($1, $2, $3)
"""

REVOKE_CLIENT_KEY = """
UPDATE client_keys k SET revoked_at = $4
  FROM clients c
 WHERE k.client_id = $1 AND k.serial_no = $2 AND k.revoked_at IS NULL
   AND c.client_id = k.client_id AND c.mall_id = $3
"""

CLIENT_EXISTS = "SELECT 1 FROM clients WHERE client_id = $1"

CLIENT_OF_MALL = "SELECT 1 FROM clients WHERE client_id = $1 AND mall_id = $2"

CLIENT_KEY_EXISTS = "SELECT 1 FROM client_keys WHERE client_id = $1 AND serial_no = $2"

REMEMBER_NONCES = """
INSERT INTO request_nonces (client_id, nonce, seen_at)
SELECT client_id, nonce, seen_at FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(client_id, nonce, seen_at)
ON CONFLICT DO NOTHING
RETURNING client_id, nonce
"""

# The first common table expressions of a statement that records its request's nonce
# before doing its own work (`WITH ` + this: the order statements of gateway.repo.orders,
# whose order key is $1-$3): $4 client, $5 nonce, $6 seen at. `fresh.nonce_fresh` is
# false for a replay, which the statement then leaves without effect, and true when it
# has no nonce to record ($5 NULL).
REQUEST_NONCE_CTES = """
nonce AS (
    INSERT INTO request_nonces (client_id, nonce, seen_at)
    SELECT $4::text, $5::text, $6::timestamptz WHERE $5::text IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING 1),
fresh AS (SELECT $5::text IS NULL OR EXISTS (SELECT FROM nonce) AS nonce_fresh)"""

FORGET_NONCES_BEFORE = "DELETE FROM request_nonces WHERE seen_at < $1"


@dataclass(frozen=True, slots=True)
class ClientKey:
    caller: Caller
    public_key_pem: str


async def client_key(conn, client_id: str, serial_no: str) -> ClientKey | None:
    row = await conn.fetchrow(CLIENT_KEY, client_id, serial_no)
    if row is None:
        return None
    caller = Caller(
        client_id=row["client_id"], mall_id=row["mall_id"], sp_appid=row["sp_appid"],
        role=row["role"], sub_mchid=row["sub_mchid"], apiv3_key=Secret(bytes(row["apiv3_key"])),
        verification=row["verification"],
    )
    return ClientKey(caller=caller, public_key_pem=row["public_key_pem"])


@dataclass(frozen=True, slots=True)
class NotificationKeys:
    apiv3_key: Secret  # encrypts the resource
    verification: str  # which name of the gateway's key signs it


async def notification_keys(conn, client_id: str) -> NotificationKeys | None:
    row = await conn.fetchrow(CLIENT_NOTIFICATION_KEYS, client_id)
    if row is None:
        return None
    return NotificationKeys(Secret(bytes(row["apiv3_key"])), row["verification"])


async def remember_nonces(conn, seen: list[tuple[str, str, datetime]]) -> set[tuple[str, str]]:
    """Record (client_id, nonce, seen_at) rows; the (client_id, nonce) pairs that were new."""
    rows = await conn.fetch(REMEMBER_NONCES, [s[0] for s in seen], [s[1] for s in seen], [s[2] for s in seen])
    return {(row["client_id"], row["nonce"]) for row in rows}


def request_nonce_args(nonce) -> tuple:
    """REQUEST_NONCE_CTES's $4-$6 for `nonce` (a `gateway.nonces.RequestNonce`, or None)."""
    return (None, None, None) if nonce is None else (nonce.client_id, nonce.nonce, nonce.seen_at)


def spend_request_nonce(nonce, row) -> None:
    """What REQUEST_NONCE_CTES found, told to the request's nonce: a replay is refused here."""
    if nonce is not None:
        nonce.spend(row["nonce_fresh"])


async def forget_nonces_before(conn, cutoff: datetime) -> int:
    status = await conn.execute(FORGET_NONCES_BEFORE, cutoff)
    return int(status.split()[-1])


async def client_exists(conn, client_id: str) -> bool:
    return await conn.fetchval(CLIENT_EXISTS, client_id) is not None


async def insert_client(conn, *, client_id, mall_id, role, sub_mchid, name, apiv3_key: bytes,
                        verification: str) -> None:
    await conn.execute(INSERT_CLIENT, client_id, mall_id, role, sub_mchid, name, apiv3_key, verification)


async def insert_client_key(conn, client_id: str, serial_no: str, public_key_pem: str) -> None:
    await conn.execute(INSERT_CLIENT_KEY, client_id, serial_no, public_key_pem)


async def revoke_client_key(conn, mall_id: str, client_id: str, serial_no: str, revoked_at: datetime) -> bool:
    status = await conn.execute(REVOKE_CLIENT_KEY, client_id, serial_no, mall_id, revoked_at)
    return status.endswith(" 1")


async def client_of_mall(conn, client_id: str, mall_id: str) -> bool:
    return await conn.fetchval(CLIENT_OF_MALL, client_id, mall_id) is not None


async def client_key_exists(conn, client_id: str, serial_no: str) -> bool:
    return await conn.fetchval(CLIENT_KEY_EXISTS, client_id, serial_no) is not None
