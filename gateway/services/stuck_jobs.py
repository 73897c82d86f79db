"""Jobs that gave up, for operators: listed with their last error, retried or resolved by
an admin, every action kept as a record (who, when, why). A retry starts the job over with
a full set of attempts; a resolution says the work was settled by hand and the job never
runs again."""

from __future__ import annotations

import enum

from gateway.domain_errors import NotFound, Refused
from gateway.repo import jobs as jobs_repo
from gateway.services.context import Services
from gateway.wire import to_wechat_time


class JobState(enum.Enum):
    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"        # gave up: an admin retries or resolves it
    RESOLVED = "resolved"


ACTIONS = ("retry", "resolve")
ACTED_BY_CHARS_MAX = 64
REASON_CHARS_MAX = 500


async def list_jobs(svc: Services, mall_id: str, state: JobState, limit: int, offset: int) -> dict:
    """One page of the jobs in `state` (read at the edge: `gateway.api.requests.mall.parse_job_state`)."""
    async with svc.pool.acquire() as conn:
        rows, total = await jobs_repo.jobs_in_state(conn, mall_id, state.value, limit, offset)
    return {"total_count": total, "offset": offset, "limit": limit, "data": [job_json(r) for r in rows]}


async def job_with_actions(svc: Services, mall_id: str, job_id: int) -> dict:
    async with svc.pool.acquire() as conn:
        row = await jobs_repo.job(conn, mall_id, job_id)
        if row is None:
            raise NotFound("job")
        actions = await jobs_repo.actions_of_job(conn, mall_id, job_id)
    return {**job_json(row), "actions": [action_json(a) for a in actions]}


async def act(svc: Services, mall_id: str, job_id: int, action: str, acted_by: str, reason: str) -> dict:
    """Retry or resolve one dead job, and record who did it, when and why, in one transaction.
    Who and why are checked at the edge (`gateway.api.requests.mall.parse_job_reason`,
    `parse_acted_by`); the action is one of `ACTIONS` (the route names only those)."""
    assert action in ACTIONS and 1 <= len(acted_by) <= ACTED_BY_CHARS_MAX, (action, acted_by)
    now = svc.clock()
    async with svc.pool.acquire() as conn, conn.transaction():
        row = await jobs_repo.job_for_update(conn, mall_id, job_id)
        if row is None:
            raise NotFound("job")
        if row["state"] != "dead":
            raise Refused("job_not_dead", "only a job that gave up can be retried or resolved",
                          state=row["state"])
        changed = (await jobs_repo.retry_dead(conn, mall_id, job_id, now) if action == "retry"
                   else await jobs_repo.resolve_dead(conn, mall_id, job_id, now))
        await jobs_repo.insert_action(conn, mall_id, job_id, action, acted_by, reason.strip(), row["last_error"], now)
        actions = await jobs_repo.actions_of_job(conn, mall_id, job_id)
    return {**job_json(changed), "actions": [action_json(a) for a in actions]}


def job_json(row) -> dict:
    return {"job_id": row["job_id"], "kind": row["kind"], "ref": row["ref"], "state": row["state"],
            "attempts": row["attempts"], "last_error": row["last_error"],
            "due_time": to_wechat_time(row["due_at"]), "create_time": to_wechat_time(row["created_at"]),
            "done_time": to_wechat_time(row["done_at"]) if row["done_at"] else None}


def action_json(row) -> dict:
    return {"action": row["action"], "acted_by": row["acted_by"], "reason": row["reason"],
            "last_error": row["last_error"], "acted_time": to_wechat_time(row["acted_at"])}
