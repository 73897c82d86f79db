"""The notification outbox: rows written with the state change, delivered by workers."""

from __future__ import annotations

from datetime import datetime

# Deliveries acknowledged ($2, $3: event ids and times of mall $1's rows), recorded in one
# statement (when no claim follows soon; a claim records them itself, below).
MARK_DELIVERED = """
UPDATE outbox d SET state = 'delivered', delivered_at = m.delivered_at, attempts = d.attempts + 1,
                    last_error = NULL
  FROM unnest($2::bigint[], $3::timestamptz[]) AS m(event_id, delivered_at)
 WHERE d.mall_id = $1 AND d.event_id = m.event_id AND d.state = 'pending'
"""

# What a delivery needs of a row (CLAIM_DUE's RETURNING; also what a statement that hands a
# row over to `gateway.outbox.OutboxDelivery.hand_over` returns).
CLAIMED_COLUMNS = ("mall_id", "event_id", "notification_id", "client_id", "notify_url", "event_type",
                   "summary", "original_type", "resource", "attempts", "created_at")

# Claim due rows of the process's own mall for one worker: the lease (next_attempt_at
# pushed forward) keeps other workers and processes off them while this one delivers; a
# crashed worker's rows come due again when the lease runs out. The same statement first
# records the deliveries acknowledged since the last claim (MARK_DELIVERED, with its
# parameters), so a delivered notification costs no transaction of its own.
CLAIM_DUE = f"""
WITH delivered AS ({MARK_DELIVERED})
UPDATE outbox o SET next_attempt_at = $5
  FROM (SELECT mall_id, event_id FROM outbox
         WHERE mall_id = $1 AND state = 'pending' AND next_attempt_at <= $4
           AND event_id <> ALL ($2::bigint[])
         ORDER BY next_attempt_at
         LIMIT $6
         FOR UPDATE SKIP LOCKED) due
 WHERE o.mall_id = due.mall_id AND o.event_id = due.event_id
RETURNING {", ".join("o." + column for column in CLAIMED_COLUMNS)}
"""

MARK_FAILED = """
UPDATE outbox SET attempts = attempts + 1, last_error = $3, next_attempt_at = $4,
                  state = CASE WHEN $5 THEN 'dead' ELSE 'pending' END
 WHERE mall_id = $1 AND event_id = $2 AND state = 'pending'
"""

# A notification about an order, to the client that created it at its notify_url.
INSERT_ORDER_EVENT = """
INSERT INTO outbox (mall_id, notification_id, client_id, notify_url, event_type, ref, summary,
                    original_type, resource, next_attempt_at, created_at)
SELECT mall_id, $4, client_id, coalesce($10, notify_url), $5, $6, $7, $8, $9, $11, $11
  FROM orders WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3
ON CONFLICT (mall_id, event_type, ref) DO NOTHING
"""

# The outbox's writer for rows that join another transaction as data (payment success):
# the SQL function `outbox_insert_row`; `event_row` is the row it takes.
TABLE = "outbox"

COUNTS = "SELECT state, count(*) AS n FROM outbox WHERE mall_id = $1 GROUP BY state"

DEAD = """
SELECT event_id, notification_id, client_id, notify_url, event_type, ref, attempts, last_error, created_at
  FROM outbox WHERE mall_id = $1 AND state = 'dead' ORDER BY event_id LIMIT $2
"""


async def claim_due(conn, mall_id: str, now: datetime, lease_until: datetime, limit: int,
                    delivered: list[tuple[int, datetime]] = ()):
    """Due rows of `mall_id`, leased until `lease_until`; first records `delivered`
    ((event_id, delivered_at) of this mall's rows acknowledged since the last claim)."""
    return await conn.fetch(CLAIM_DUE, mall_id, [e for e, _ in delivered], [at for _, at in delivered],
                            now, lease_until, limit)


async def insert_order_event(conn, *, order_key, notification_id, event_type: str, ref: str,
                             summary: str, original_type: str, resource: dict, now: datetime,
                             notify_url: str | None = None) -> None:
    await conn.execute(INSERT_ORDER_EVENT, *order_key, notification_id, event_type, ref, summary,
                       original_type, resource, notify_url, now)


def event_row(*, mall_id: str, notification_id, client_id: str, notify_url: str, event_type: str, ref: str,
              summary: str, original_type: str, resource: dict, now: str) -> dict:
    """One notification as `outbox_insert_row` takes it, due at once (`now`: ISO 8601)."""
    return {"mall_id": mall_id, "notification_id": str(notification_id), "client_id": client_id,
            "notify_url": notify_url, "event_type": event_type, "ref": ref, "summary": summary,
            "original_type": original_type, "resource": resource, "next_attempt_at": now, "created_at": now}


async def mark_delivered(conn, mall_id: str, delivered: list[tuple[int, datetime]]) -> None:
    """Record acknowledged deliveries ((event_id, delivered_at) of `mall_id`'s rows)."""
    await conn.execute(MARK_DELIVERED, mall_id, [e for e, _ in delivered], [at for _, at in delivered])


async def mark_failed(conn, mall_id: str, event_id: int, error: str, next_attempt_at: datetime,
                      dead: bool) -> None:
    await conn.execute(MARK_FAILED, mall_id, event_id, error, next_attempt_at, dead)


async def counts(conn, mall_id: str) -> dict[str, int]:
    return {r["state"]: r["n"] for r in await conn.fetch(COUNTS, mall_id)}


async def dead_letters(conn, mall_id: str, limit: int):
    return await conn.fetch(DEAD, mall_id, limit)
