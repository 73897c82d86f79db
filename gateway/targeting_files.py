"""`mallpay targeting evaluate | simulate`: the offline evaluation of next-store targeting
on a mall's own history, and simulated malls to try it on. Files only, no database.

STORES.csv: `sub_mchid,name,floor,category`; PAYMENTS.csv: `openid,sub_mchid,paid_at,amount_fen`
(`paid_at` ISO 8601 with an offset). Columns in any order, found by their header; a UTF-8
byte order mark is tolerated. A bad file is refused with its name, line and column.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime
from pathlib import Path

STORE_COLUMNS = ("sub_mchid", "name", "floor", "category")
PAYMENT_COLUMNS = ("openid", "sub_mchid", "paid_at", "amount_fen")
PREDICTION_COLUMNS = ("openid", "paid_at", "sub_mchid", "offered")
PROFILES = ("destination", "community", "random", "outlet")  # coupons.simulated_mall.PROFILES


class BadFile(Exception):
    """A file the evaluation cannot read; the message names the file, line and column."""


def add_commands(sub) -> None:
    targeting = sub.add_parser("targeting", help="next-store targeting: offline evaluation, simulated malls")
    actions = targeting.add_subparsers(metavar="ACTION")
    evaluate = actions.add_parser("evaluate", help="hit rate at K of the model and the baselines on a history")
    evaluate.add_argument("--stores", required=True, type=Path, help="STORES.csv")
    evaluate.add_argument("--payments", required=True, type=Path, help="PAYMENTS.csv")
    evaluate.add_argument("--train-until", required=True, type=_aware_datetime,
                          help="fit on payments before this instant (ISO 8601 with offset)")
    evaluate.add_argument("--k", type=_positive_int, default=3, help="stores offered after each payment")
    evaluate.add_argument("--predictions-out", type=Path, help="write the model's offers, one row per test payment")
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluate.set_defaults(run=run_evaluate)
    simulate = actions.add_parser("simulate", help="write STORES.csv and PAYMENTS.csv of a simulated mall")
    simulate.add_argument("--out", required=True, type=Path)
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--profile", default="destination", choices=PROFILES)
    simulate.add_argument("--shoppers", type=_positive_int, default=1500)
    simulate.add_argument("--days", type=_positive_int, default=150)
    simulate.set_defaults(run=run_simulate)


def run_evaluate(settings, args) -> int:
    from coupons.evaluation import MODEL, evaluate
    try:
        stores = read_stores(args.stores)
        payments, paid_at_text = read_payments(args.payments)
    except (BadFile, OSError) as exc:
        print(f"mallpay: {exc}", file=sys.stderr)
        return 2
    if not any(p.paid_at < args.train_until for p in payments):
        print(f"mallpay: no payment in {args.payments} is before --train-until {args.train_until.isoformat()}",
              file=sys.stderr)
        return 2
    known = {s.sub_mchid for s in stores}
    unknown = sum(p.sub_mchid not in known for p in payments)
    if unknown:
        print(f"mallpay: {unknown} payments are at stores missing from {args.stores}: "
              "they count as history, such stores are never offered", file=sys.stderr)
    result = evaluate(stores, payments, train_until=args.train_until, k=args.k)
    if args.predictions_out:
        with args.predictions_out.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(PREDICTION_COLUMNS)
            for position, offered in sorted(result.offered.items()):
                payment = payments[position]
                writer.writerow([payment.openid, paid_at_text[position], payment.sub_mchid, " ".join(offered)])
    if args.json:
        print(json.dumps({"train_until": args.train_until.isoformat(), **result.as_json()}, indent=2))
    else:
        print(_report(result, args.train_until))
    return 0


def _report(result, train_until: datetime) -> str:
    from coupons.evaluation import NEXT_AT_SAME_STORE, NO_NEXT_PAYMENT, SCORED
    scored = result.outcomes[SCORED]
    lines = [
        f"fitted on {result.train_payments} payments before {train_until.isoformat()}; "
        f"{result.test_payments} test payments after it",
        f"scored: {scored} (left out of the hit rate: {result.outcomes[NEXT_AT_SAME_STORE]} whose next payment "
        f"is at the same store, {result.outcomes[NO_NEXT_PAYMENT]} with no next payment)",
        f"hit rate at K={result.k} (the next payment, at another store, is among the K offered):",
    ]
    popularity = result.hit_rate("popularity") if "popularity" in result.hits else 0.0
    for name in result.hits:
        ratio = f"  {result.hit_rate(name) / popularity:.2f}x popularity" if popularity else ""
        lines.append(f"  {name:<27} {result.hit_rate(name):.4f}  ({result.hits[name]}/{scored}){ratio}")
    return "\n".join(lines)


def run_simulate(settings, args) -> int:
    from coupons.simulated_mall import simulate
    stores, payments = simulate(args.profile, seed=args.seed, shoppers=args.shoppers, days=args.days)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "stores.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(STORE_COLUMNS)
        writer.writerows([s.sub_mchid, s.name, s.floor, s.category] for s in stores)
    with (args.out / "payments.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(PAYMENT_COLUMNS)
        writer.writerows([p.openid, p.sub_mchid, p.paid_at.isoformat(timespec="seconds"), p.amount_fen]
                         for p in payments)
    print(f"{len(stores)} stores, {len(payments)} payments written to {args.out}/stores.csv, payments.csv")
    return 0


def read_stores(path: Path) -> list:
    from coupons.targeting import Store
    stores, seen = [], set()
    for line, row in _rows(path, STORE_COLUMNS):
        store = Store(**{column: row[column].strip() for column in STORE_COLUMNS})
        if not store.sub_mchid:
            raise BadFile(f"{path}: line {line}: sub_mchid is empty")
        if store.sub_mchid in seen:
            raise BadFile(f"{path}: line {line}: store {store.sub_mchid} is listed twice")
        seen.add(store.sub_mchid)
        stores.append(store)
    return stores


def read_payments(path: Path) -> tuple[list, list[str]]:
    """The payments in file order, and each one's `paid_at` exactly as written."""
    from coupons.targeting import Payment
    payments, paid_at_text = [], []
    for line, row in _rows(path, PAYMENT_COLUMNS):
        openid, sub_mchid, text = row["openid"].strip(), row["sub_mchid"].strip(), row["paid_at"]
        for column, value in (("openid", openid), ("sub_mchid", sub_mchid)):
            if not value:
                raise BadFile(f"{path}: line {line}: {column} is empty")
        try:
            paid_at = _aware_datetime(text.strip())
        except argparse.ArgumentTypeError as exc:
            raise BadFile(f"{path}: line {line}: paid_at {exc}") from None
        try:
            amount_fen = int(row["amount_fen"].strip())
        except ValueError:
            raise BadFile(f"{path}: line {line}: amount_fen {row['amount_fen']!r} is not a whole number of fen") from None
        if amount_fen < 0:
            raise BadFile(f"{path}: line {line}: amount_fen {amount_fen} is negative")
        payments.append(Payment(openid=openid, sub_mchid=sub_mchid, paid_at=paid_at, amount_fen=amount_fen))
        paid_at_text.append(text)
    return payments, paid_at_text


def _rows(path: Path, columns: tuple[str, ...]):
    """(line number, row) of a CSV file whose header names at least `columns`."""
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [column for column in columns if column not in header]
        if missing:
            raise BadFile(f"{path}: missing column(s) {', '.join(missing)} (the header has: {', '.join(header)})")
        reader.fieldnames = header
        for row in reader:
            if None in row or any(row[column] is None for column in columns):
                raise BadFile(f"{path}: line {reader.line_num}: expected {len(header)} fields")
            yield reader.line_num, row


def _aware_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset (write e.g. 2026-09-29T00:00:00+08:00)")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value
