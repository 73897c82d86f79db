"""`mallpay statement` and `mallpay export` against a seeded ledger, as finance runs them."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from pathlib import Path

from tests.integration.test_ledger_export import DAYS, MALL, STORES, _seeded
from gateway.services import statements
from tests.support import on_pool
from ledger.statements import period_bounds


async def _mallpay(database_url: str, *args: str) -> tuple[int, bytes, bytes]:
    env = {**os.environ, "DATABASE_URL": database_url, "MALLPAY_SP_MCHID": MALL}
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("mallpay")), *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode, out, err


async def test_statement_and_export_commands(db_pool, database_url, tmp_path):
    await _seeded(db_pool)
    day = DAYS[1].isoformat()
    code, out, err = await _mallpay(database_url, "statement", "--sub-mchid", STORES[0], "--date", day,
                                    "--format", "json")
    assert code == 0, err.decode()
    printed = json.loads(out)
    expected = await statements.statement(on_pool(db_pool), MALL, STORES[0], DAYS[1], DAYS[1])
    assert printed["totals"]["net"] == expected.totals_fen["net"] and printed["ties_to_ledger"] is True
    assert b"Ties to the ledger to the fen" in err

    target = tmp_path / "s.csv"
    code, _, err = await _mallpay(database_url, "statement", "--sub-mchid", STORES[0], "--date", day,
                                  "--to", DAYS[2].isoformat(), "--out", str(target))
    assert code == 0 and target.read_bytes().startswith("\ufeff".encode())

    code, _, err = await _mallpay(database_url, "statement", "--sub-mchid", "1900000999", "--date", day)
    assert code == 1 and b"tenant_not_found" in err

    exported = tmp_path / "ledger.csv"
    code, _, err = await _mallpay(database_url, "export", "--from", day, "--to", DAYS[2].isoformat(),
                                  "--format", "csv", "--out", str(exported))
    assert code == 0, err.decode()
    rows = list(csv.DictReader(io.StringIO(exported.read_text())))
    from_at, to_at = period_bounds(DAYS[1], DAYS[2])
    async with db_pool.acquire() as conn:
        entries = await conn.fetchval("SELECT count(*) FROM entries e JOIN transfers t USING (mall_id, transfer_id) "
                                      "WHERE t.created_at >= $1 AND t.created_at < $2", from_at, to_at)
    assert len(rows) == entries and sum(int(r["amount_fen"]) for r in rows if r["currency"] == "CNY") == 0
    assert f"{len({r['transfer_id'] for r in rows})} transfers written".encode() in err
    assert b"rows" in err  # the progress bar

    code, _, err = await _mallpay(database_url, "export", "--from", "2026-11-02", "--to", "2026-11-01",
                                  "--out", str(exported))
    assert code == 1 and b"to_before" in err
