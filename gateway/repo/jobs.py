"""The scheduler's jobs: due work that survives restarts and runs once across processes."""

from __future__ import annotations

from datetime import datetime

ENSURE_JOB = """
INSERT INTO jobs (mall_id, kind, ref, due_at, created_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (mall_id, kind, ref) DO UPDATE
   SET due_at = least(jobs.due_at, excluded.due_at), state = 'pending', attempts = 0
 WHERE jobs.state <> 'pending' OR jobs.due_at > excluded.due_at
"""

# Claiming pushes due_at to the lease end: a crashed worker's job comes due again then.
CLAIM_DUE = """
UPDATE jobs j SET due_at = $2, attempts = j.attempts + 1
  FROM (SELECT mall_id, job_id FROM jobs
         WHERE mall_id = $4 AND state = 'pending' AND due_at <= $1
         ORDER BY due_at LIMIT $3
         FOR UPDATE SKIP LOCKED) due
 WHERE j.mall_id = due.mall_id AND j.job_id = due.job_id
RETURNING j.mall_id, j.job_id, j.kind, j.ref, j.attempts
"""

FINISH = "UPDATE jobs SET state = 'done', done_at = $3, last_error = NULL WHERE mall_id = $1 AND job_id = $2"

RETRY = """
UPDATE jobs SET due_at = $3, last_error = $4, state = CASE WHEN $5 THEN 'dead' ELSE 'pending' END
 WHERE mall_id = $1 AND job_id = $2
"""


EXTEND_LEASE = "UPDATE jobs SET due_at = $3 WHERE mall_id = $1 AND job_id = $2 AND state = 'pending'"

COUNTS = "SELECT kind, state, count(*) AS n FROM jobs WHERE mall_id = $1 GROUP BY kind, state"


# The jobs table's writer for rows that join another transaction as data (payment
# success): the SQL function `jobs_insert_row`; `job_row` is the row it takes.
TABLE = "jobs"


def job_row(mall_id: str, kind: str, ref: str, due_at: datetime, now: str) -> dict:
    """`now`: ISO 8601, as the caller formats it once for all its rows."""
    return {"mall_id": mall_id, "kind": kind, "ref": ref, "due_at": due_at.isoformat(), "created_at": now}


async def ensure_job(conn, mall_id: str, kind: str, ref: str, due_at: datetime, now: datetime) -> None:
    await conn.execute(ENSURE_JOB, mall_id, kind, ref, due_at, now)


async def claim_due(conn, mall_id: str, now: datetime, lease_until: datetime, limit: int):
    """Due jobs of `mall_id`, leased until `lease_until`."""
    return await conn.fetch(CLAIM_DUE, now, lease_until, limit, mall_id)


async def finish(conn, mall_id: str, job_id: int, now: datetime) -> None:
    await conn.execute(FINISH, mall_id, job_id, now)


async def retry(conn, mall_id: str, job_id: int, due_at: datetime, error: str, dead: bool) -> None:
    await conn.execute(RETRY, mall_id, job_id, due_at, error, dead)


async def extend_lease(conn, mall_id: str, job_id: int, lease_until: datetime) -> None:
    await conn.execute(EXTEND_LEASE, mall_id, job_id, lease_until)


async def counts(conn, mall_id: str) -> list:
    return await conn.fetch(COUNTS, mall_id)


# -- operators: what gave up, and their retries and resolutions --------------------------------

# What an operator sees of a job.
JOB_COLUMNS = "mall_id, job_id, kind, ref, state, attempts, last_error, due_at, created_at, done_at"

JOBS_IN_STATE = f"""
SELECT {JOB_COLUMNS}
  FROM jobs WHERE mall_id = $1 AND state = $2 ORDER BY job_id LIMIT $3 OFFSET $4
"""

JOBS_IN_STATE_COUNT = "SELECT count(*) FROM jobs WHERE mall_id = $1 AND state = $2"

JOB = f"""
SELECT {JOB_COLUMNS}
  FROM jobs WHERE mall_id = $1 AND job_id = $2
"""

JOB_FOR_UPDATE = JOB + " FOR UPDATE"

# A retried job starts over with a full set of attempts; its last error stays for the record.
RETRY_DEAD = f"""
UPDATE jobs SET state = 'pending', attempts = 0, due_at = $3 WHERE mall_id = $1 AND job_id = $2 AND state = 'dead'
RETURNING {JOB_COLUMNS}
"""

RESOLVE_DEAD = f"""
UPDATE jobs SET state = 'resolved', done_at = $3 WHERE mall_id = $1 AND job_id = $2 AND state = 'dead'
RETURNING {JOB_COLUMNS}
"""

INSERT_ACTION = """
INSERT INTO job_actions (mall_id, job_id, action, acted_by, reason, last_error, acted_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING action_id, action, acted_by, reason, last_error, acted_at
"""

ACTIONS_OF_JOB = """
SELECT action_id, action, acted_by, reason, last_error, acted_at FROM job_actions
 WHERE mall_id = $1 AND job_id = $2 ORDER BY action_id
"""

DEAD_COUNT = "SELECT count(*) FROM jobs WHERE mall_id = $1 AND state = 'dead'"


async def jobs_in_state(conn, mall_id: str, state: str, limit: int, offset: int) -> tuple[list, int]:
    rows = await conn.fetch(JOBS_IN_STATE, mall_id, state, limit, offset)
    return rows, await conn.fetchval(JOBS_IN_STATE_COUNT, mall_id, state)


async def job_for_update(conn, mall_id: str, job_id: int):
    return await conn.fetchrow(JOB_FOR_UPDATE, mall_id, job_id)


async def job(conn, mall_id: str, job_id: int):
    return await conn.fetchrow(JOB, mall_id, job_id)


async def retry_dead(conn, mall_id: str, job_id: int, due_at: datetime):
    return await conn.fetchrow(RETRY_DEAD, mall_id, job_id, due_at)


async def resolve_dead(conn, mall_id: str, job_id: int, now: datetime):
    return await conn.fetchrow(RESOLVE_DEAD, mall_id, job_id, now)


async def insert_action(conn, mall_id: str, job_id: int, action: str, acted_by: str, reason: str,
                        last_error: str | None, now: datetime):
    return await conn.fetchrow(INSERT_ACTION, mall_id, job_id, action, acted_by, reason, last_error, now)


async def actions_of_job(conn, mall_id: str, job_id: int) -> list:
    return await conn.fetch(ACTIONS_OF_JOB, mall_id, job_id)


async def dead_count(conn, mall_id: str) -> int:
    """Jobs of `mall_id` that gave up: what /health reports."""
    return await conn.fetchval(DEAD_COUNT, mall_id)
