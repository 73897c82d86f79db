"""Jobs that gave up are seen and handled by operators: listed with their last error
through the API and `mallpay jobs`, retried or resolved by an admin with a record of who,
when and why, and counted by /health/ready."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import aiohttp

from gateway import cli
from gateway.repo import jobs as jobs_repo
from gateway.services import scheduler
from tests.support import wait_until

MAKE_DEAD = """
UPDATE jobs SET state = 'dead', attempts = 20, last_error = 'ChannelError:SYSTEM_ERROR'
 WHERE mall_id = $1 AND kind = $2 AND ref = $3
RETURNING job_id
"""
JOB_STATE = "SELECT state FROM jobs WHERE job_id = $1"


async def _dead_job(mall, ref: str) -> int:
    """A split follow-up that gave up (its split is long gone: a retry finds nothing to do)."""
    now = datetime.now(timezone.utc)
    async with mall.pool.acquire() as conn:
        await jobs_repo.ensure_job(conn, mall.settings.sp_mchid, "sync_split", ref, now + timedelta(days=1), now)
        return await conn.fetchval(MAKE_DEAD, mall.settings.sp_mchid, "sync_split", ref)


async def _health(mall) -> dict:
    """The informational checks of /health/ready, by name (dead_jobs: jobs that gave up)."""
    async with aiohttp.ClientSession() as session, session.get(mall.gateway_url + "/health/ready") as resp:
        assert resp.status == 200
        checks = (await resp.json())["checks"]
    return {name: check.get("count") for name, check in checks.items()}


async def test_an_admin_sees_a_dead_job_and_retries_it_with_a_record(make_mall):
    mall = await make_mall()
    job_id = await _dead_job(mall, "1900000201/SP-GONE-1")
    assert (await _health(mall))["dead_jobs"] == 1

    listed = await mall.admin.get("/v3/mall/jobs?state=dead")
    assert listed.status == 200, listed.json
    assert listed.json["total_count"] == 1
    [job] = listed.json["data"]
    assert (job["job_id"], job["kind"], job["ref"], job["state"], job["attempts"], job["last_error"]) == (
        job_id, "sync_split", "1900000201/SP-GONE-1", "dead", 20, "ChannelError:SYSTEM_ERROR")
    assert (await mall.app.get("/v3/mall/jobs")).status == 403, "admins only"
    assert (await mall.app.get("/v3/mall/jobs?state=stuck")).status == 403, "the role before the query"
    stuck = await mall.admin.get("/v3/mall/jobs?state=stuck")
    assert (stuck.status, stuck.json) == (400, {
        "code": "PARAM_ERROR", "message": "state is one of pending, done, dead, resolved",
        "detail": {"field": "state", "issue": "out_of_range"}})

    no_reason = await mall.admin.post(f"/v3/mall/jobs/{job_id}/retry", {})
    assert no_reason.status == 400 and no_reason.json["detail"]["field"] == "reason"
    retried = await mall.admin.post(f"/v3/mall/jobs/{job_id}/retry", {"reason": "channel back after outage"})
    assert retried.status == 200, retried.json
    assert (retried.json["state"], retried.json["attempts"]) == ("pending", 0)
    [action] = retried.json["actions"]
    assert (action["action"], action["acted_by"], action["reason"], action["last_error"]) == (
        "retry", mall.admin.creds.mchid, "channel back after outage", "ChannelError:SYSTEM_ERROR")
    assert action["acted_time"]

    async def done():
        async with mall.pool.acquire() as conn:
            return await conn.fetchval(JOB_STATE, job_id) == "done"

    await wait_until(done, what="the retried job ran")
    assert (await _health(mall))["dead_jobs"] == 0
    again = await mall.admin.post(f"/v3/mall/jobs/{job_id}/resolve", {"reason": "twice"})
    assert again.status == 400 and again.json["detail"] == {"reason": "job_not_dead", "state": "done"}
    missing = await mall.admin.post("/v3/mall/jobs/999999/retry", {"reason": "x"})
    assert missing.status == 404 and missing.json["code"] == "RESOURCE_NOT_EXISTS"
    shown = await mall.admin.get(f"/v3/mall/jobs/{job_id}")
    assert [a["action"] for a in shown.json["actions"]] == ["retry"]


async def test_mallpay_jobs_lists_and_resolves_a_dead_job(make_mall, database_url, monkeypatch, capsys):
    mall = await make_mall()
    job_id = await _dead_job(mall, "1900000202/SP-GONE-2")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MALLPAY_DATA_DIR", str(mall.settings.data_dir))

    assert await _cli("jobs", "list") == 0
    out = capsys.readouterr().out
    assert f"{job_id}\tsync_split\t1900000202/SP-GONE-2\tdead\t20\tChannelError:SYSTEM_ERROR" in out
    assert await _cli("jobs", "list", "--state", "stuck") == 1
    assert "PARAM_ERROR out_of_range: state is one of pending, done, dead, resolved" in capsys.readouterr().err

    assert await _cli("jobs", "resolve", str(job_id), "--by", "ops lead", "--reason", "split checked by hand") == 0
    assert '"state": "resolved"' in capsys.readouterr().out
    assert await _cli("jobs", "show", str(job_id)) == 0
    shown = capsys.readouterr().out
    assert '"acted_by": "ops lead"' in shown and '"reason": "split checked by hand"' in shown
    assert await _cli("jobs", "retry", str(job_id), "--by", "ops lead", "--reason", "again") == 1
    assert "job_not_dead" in capsys.readouterr().err
    assert (await _health(mall))["dead_jobs"] == 0
    async with mall.pool.acquire() as conn:
        assert await conn.fetchval(JOB_STATE, job_id) == "resolved"


async def _cli(*argv: str) -> int:
    """The command runs its own event loop, as from a shell: run it in a thread."""
    import asyncio
    return await asyncio.to_thread(cli.main, list(argv))


async def test_a_job_that_fails_unexpectedly_is_retried_and_ends_dead_with_its_error(make_mall, monkeypatch):
    """A defect or a database error inside one job is recorded on the job and retried with
    backoff; at its last attempt the job ends dead for an operator, and the jobs claimed
    with it still run."""
    async def broken(svc, mall_id: str, sub_mchid: str, out_trade_no: str) -> bool:
        raise KeyError("lines")

    monkeypatch.setitem(scheduler.HANDLERS, "guide_reward", broken)
    mall = await make_mall()
    mall_id = mall.settings.sp_mchid
    now = datetime.now(timezone.utc)
    later = now + timedelta(days=1)
    async with mall.pool.acquire() as conn:
        await jobs_repo.ensure_job(conn, mall_id, "guide_reward", "1900000201/GR-BROKEN-1", later, now)
        await jobs_repo.ensure_job(conn, mall_id, "guide_reward", "1900000201/GR-BROKEN-2", later, now)
        await jobs_repo.ensure_job(conn, mall_id, "sync_split", "1900000201/SP-GONE-3", later, now)
        # All due at once, the second at its last attempt: one statement, so no pass sees them half set.
        await conn.execute("UPDATE jobs SET due_at = $2, attempts = CASE WHEN ref LIKE '%/GR-BROKEN-2' THEN $3 - 1"
                           " ELSE attempts END WHERE mall_id = $1", mall_id, now, mall.settings.job_attempts_max)

    async def jobs() -> dict:
        async with mall.pool.acquire() as conn:
            rows = await conn.fetch("SELECT ref, state, attempts, last_error FROM jobs WHERE mall_id = $1", mall_id)
        return {row["ref"].split("/")[1]: (row["state"], row["attempts"], row["last_error"]) for row in rows}

    async def all_ran() -> bool:
        seen = await jobs()
        return seen["SP-GONE-3"][0] == "done" and all(seen[ref][2] for ref in ("GR-BROKEN-1", "GR-BROKEN-2"))

    await wait_until(all_ran, what="every claimed job ran once")
    seen = await jobs()
    assert seen["GR-BROKEN-1"] == ("pending", 1, "KeyError:'lines'")
    assert seen["GR-BROKEN-2"] == ("dead", mall.settings.job_attempts_max, "KeyError:'lines'")
    assert (await _health(mall))["dead_jobs"] == 1
