"""`mallpay statement` and `mallpay export`: a store's statement and the ledger export,
straight from the database (finance runs them next to it), with a progress bar."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gateway.settings import Settings


def add_commands(sub) -> None:
    statement = sub.add_parser("statement", help="a store's statement for a China-time day or range")
    statement.add_argument("--sub-mchid", required=True)
    statement.add_argument("--date", required=True, help="YYYY-MM-DD (China time)")
    statement.add_argument("--to", help="last day, inclusive (default: --date)")
    statement.add_argument("--format", choices=["csv", "json"], default="csv")
    statement.add_argument("--out", type=Path, help="file to write (default: standard output)")
    statement.set_defaults(run=_statement)

    export = sub.add_parser("export", help="ledger transfers of a range as csv, jsonl or beancount")
    export.add_argument("--from", dest="from_", required=True,
                        help="first China-time day (YYYY-MM-DD) or an ISO 8601 instant with offset")
    export.add_argument("--to", required=True, help="last day, inclusive, or an instant, exclusive")
    export.add_argument("--format", choices=["csv", "jsonl", "beancount"], default="csv")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--quiet", action="store_true", help="no progress bar")
    export.set_defaults(run=_export)


def _statement(settings: Settings, args) -> int:
    from gateway.api.requests.ledger import parse_day, statement_period
    from gateway.app import database_services
    from gateway.cli import _pool, _run_refusable
    from gateway.services import statements
    from ledger.statement_formats import statement_csv, statement_json

    async def run():
        from_on = parse_day(args.date, "date")
        from_on, to_on = statement_period(from_on, parse_day(args.to, "to") if args.to else from_on)
        async with _pool(settings) as pool:
            return await statements.statement(database_services(settings, pool), settings.sp_mchid, args.sub_mchid,
                                              from_on, to_on)

    found = _run_refusable(run())
    if found is None:
        return 1
    body = statement_csv(found) if args.format == "csv" else json.dumps(
        statement_json(found), ensure_ascii=False, indent=1).encode() + b"\n"
    if args.out:
        args.out.write_bytes(body)
    else:
        sys.stdout.buffer.write(body)
    print(found.tie_text, file=sys.stderr)
    return 0 if found.ties else 3


class _Progress:
    """Counts what has been written in the unit the bar's total is in: entries (CSV rows),
    transfers (JSON lines) or transactions (beancount: each ends with a blank line)."""

    def __init__(self, fmt: str, quiet: bool):
        self.fmt, self.quiet, self.bar, self.last = fmt, quiet, None, b""
        # --quiet CSV: no bar, so no second pass to count its rows

    def start(self, total: int, unit: str) -> None:
        from tqdm import tqdm
        self.bar = tqdm(total=total, unit=f" {unit}", unit_scale=True, disable=self.quiet, file=sys.stderr)

    def advance(self, chunk: bytes) -> None:
        if self.fmt == "beancount":
            joined = self.last + chunk
            done = joined.count(b"\n\n") - self.last.count(b"\n\n")
            self.last = chunk[-1:]
        else:
            done = chunk.count(b"\n")
        self.bar.update(done)


def _export(settings: Settings, args) -> int:
    from gateway.api.requests.ledger import export_range
    from gateway.app import database_services
    from gateway.cli import _pool, _run_refusable
    from gateway.services import exports

    progress = _Progress(args.format, args.quiet)

    async def run():
        from_at, to_at = export_range(args.from_, args.to)
        async with _pool(settings) as pool:
            with args.out.open("wb") as out:
                async def write(chunk: bytes) -> None:
                    out.write(chunk)
                    if progress.bar is not None:
                        progress.advance(chunk)

                async def started(info: exports.ExportStarted) -> None:
                    if info.entries is not None:
                        progress.start(info.entries + 1, "rows")
                    else:
                        progress.start(info.transfers, "transfers")

                return await exports.export(database_services(settings, pool), settings.sp_mchid, from_at, to_at,
                                            args.format, write, started=started,
                                            count_entries=args.format == "csv" and not args.quiet)

    count = _run_refusable(run())
    if progress.bar is not None:
        progress.bar.close()
    if count is None:
        return 1
    print(f"{count} transfers written to {args.out}", file=sys.stderr)
    return 0

