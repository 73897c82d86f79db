"""The payment transaction as it was before payment success grew by data, kept to
compare against in the same benchmark run (`--variants gateway legacy`).

Before migrations/0003, `mallpay_apply_payment` took 16 typed arguments and opened the
order's funds and jobs with its own SQL (and migration 0005's trigger filled the
set-asides). This module installs that function as migrations/0002 declared it under
another name, and runs what `gateway.services.payments._apply` ran then, with the json
codec of then (`use_stdlib_json`). Measurement only; nothing in the gateway uses it.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from pathlib import Path

import gateway.db
from gateway.shapes.transactions import transaction_resource
from ledger.payments import channel_fee_fen, payment_transfer

FUNCTION = "bench_legacy_apply_payment"
APPLY = f"SELECT {FUNCTION}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
MIGRATION = Path(__file__).resolve().parents[1] / "migrations" / "0002_splitting.sql"


def function_sql() -> str:
    """0002's CREATE FUNCTION mallpay_apply_payment, renamed."""
    text = MIGRATION.read_text()
    match = re.search(r"CREATE FUNCTION mallpay_apply_payment\(.*?END \$\$;", text, re.S)
    assert match, "migrations/0002 no longer declares mallpay_apply_payment"
    return match.group(0).replace("mallpay_apply_payment", FUNCTION, 1)


def use_stdlib_json() -> None:
    """The connection codec as it was before: the standard library's json (now orjson)."""
    async def init(conn) -> None:
        for type_name in ("jsonb", "json"):
            await conn.set_type_codec(type_name, schema="pg_catalog", decoder=json.loads,
                                      encoder=lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")))
    gateway.db._init_connection = init


async def install(conn) -> None:
    await conn.execute(function_sql())


async def apply(svc, conn, row, trade) -> str:
    """The arguments the 16-parameter function took, built as the gateway built them."""
    fee_fen = channel_fee_fen(trade.total_fen, row["fee_rate_bps"])
    transfer = payment_transfer(
        sub_mchid=row["sub_mchid"], out_trade_no=row["out_trade_no"], total_fen=trade.total_fen,
        fee_fen=fee_fen, profit_sharing=row["profit_sharing"],
    )
    paid = {"transaction_id": trade.transaction_id, "bank_type": trade.bank_type or "OTHERS",
            "success_at": trade.success_at or svc.clock(),
            "payer_total_fen": trade.payer_total_fen if trade.payer_total_fen is not None else trade.total_fen}
    settings = svc.settings
    # One statement, as before: the set-asides are filled by migration 0005's trigger.
    return await conn.fetchval(
        APPLY, row["mall_id"], row["sub_mchid"], row["out_trade_no"], trade.total_fen, paid["transaction_id"],
        paid["payer_total_fen"], paid["bank_type"], paid["success_at"], svc.clock(), transfer.accounts,
        transfer.amounts_fen, uuid.uuid4(), transaction_resource(row, paid),
        fee_fen,
        paid["success_at"] + timedelta(seconds=settings.split_first_try_after_s),
        settings.finish_before_unfreeze_s,
    )
