"""`mallpay reconcile show --date D` prints the stored report (exit 3 while a discrepancy
is open, 1 when there is no report); `mallpay reconcile --date D` refuses plainly when
the channel cannot be reached, and writes nothing."""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, timezone

from gateway import cli, invariants
from gateway.db import create_pool
from gateway.repo import bills as bills_repo
from gateway.services import onboarding
from gateway.settings import Settings

DAY = date(2026, 11, 3)


async def test_show_and_run_from_the_command_line(database_url, tmp_path, monkeypatch, capsys):
    settings = Settings()
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MALLPAY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MALLPAY_CHANNEL_URL", "http://127.0.0.1:9")  # nothing listens there
    pool = await create_pool(database_url, min_size=1, max_size=2, statement_timeout_ms=5000)
    now = datetime(2026, 11, 4, 3, tzinfo=timezone.utc)
    try:
        await onboarding.ensure_mall(pool, settings.sp_mchid, settings.sp_appid, settings.mall_name)
        async with pool.acquire() as conn, conn.transaction():
            await bills_repo.start_report(conn, settings.sp_mchid, DAY, now)
            await bills_repo.finish_report(conn, settings.sp_mchid, DAY, [{
                "bill": "trade", "class": "amount_mismatch", "ref": "1900000201/ORDER0001", "sub_mchid": "1900000201",
                "ours": json.dumps({"amount": 100}), "channel": json.dumps({"amount": 101}), "what": "differs",
                "action": "ask the channel", "healed": False}], {"trade": 1}, {"trade": {"matched": 0}}, now)

        assert await asyncio.to_thread(cli.main, ["reconcile", "show", "--date", DAY.isoformat()]) == 3
        shown = json.loads(capsys.readouterr().out)
        assert shown["date"] == DAY.isoformat() and shown["state"] == "done"
        assert [(d["class"], d["ref"], d["ours"]["amount"]) for d in shown["discrepancies"]] == [
            ("amount_mismatch", "1900000201/ORDER0001", 100)]

        assert await asyncio.to_thread(cli.main, ["reconcile", "show", "--date", "2026-11-01"]) == 1
        assert "no reconciliation of 2026-11-01" in capsys.readouterr().err

        assert await asyncio.to_thread(cli.main, ["reconcile", "--date", "2026-11-02"]) == 1
        assert "could not be reached" in capsys.readouterr().err
        async with pool.acquire() as conn:
            assert await bills_repo.report(conn, settings.sp_mchid, date(2026, 11, 2)) is None
            assert await invariants.check_invariants(conn) == []
    finally:
        await pool.close()
