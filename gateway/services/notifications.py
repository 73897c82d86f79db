"""Notification delivery as operators see it: counts by state and the dead letters."""

from __future__ import annotations

from gateway.repo import outbox as outbox_repo
from gateway.services.context import Services


async def delivery_report(svc: Services, mall_id: str, dead_max: int) -> dict:
    async with svc.pool.acquire() as conn:
        counts = await outbox_repo.counts(conn, mall_id)
        dead = await outbox_repo.dead_letters(conn, mall_id, dead_max)
    return {
        "counts": counts,
        "dead": [{"id": str(r["notification_id"]), "event_type": r["event_type"], "ref": r["ref"],
                  "client_mchid": r["client_id"], "attempts": r["attempts"],
                  "last_error": r["last_error"]} for r in dead],
    }
