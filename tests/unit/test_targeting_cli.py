"""`mallpay targeting evaluate | simulate`: files in, hit rates and predictions out, no database."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from gateway.cli import main

TRAIN_UNTIL = "2026-07-03T00:00:00+08:00"
STORES = "sub_mchid,name,floor,category\nA,Alpha,1F,cafe\nB,Beta,1F,fashion\nC,Gamma,2F,shoes\nD,Delta,3F,food\n"


def payments_csv() -> str:
    """Columns in another order than the documented one; paid_at in two offset spellings."""
    rows = ["amount_fen,paid_at,sub_mchid,openid"]
    for day in (1, 2):
        for shopper in range(6):
            rows += [f"1000,2026-07-0{day}T10:0{shopper}:00+08:00,A,o{shopper}",
                     f"2000,2026-07-0{day}T11:0{shopper}:00+08:00,B,o{shopper}"]
    rows += ["1500,2026-07-03T02:00:00Z,A,o1",          # test: next is B, another store
             "2500,2026-07-03T11:00:00+08:00,B,o1",     # test: no next payment
             "1500,2026-07-04T10:00:00+08:00,C,o2",     # test: next is at the same store
             "1500,2026-07-04T10:30:00+08:00,C,o2",     # test: no next payment
             "1500,2026-07-05T10:00:00.250+08:00,A,o3"]  # test: no next payment
    return "\n".join(rows) + "\n"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    stores, payments = tmp_path / "stores.csv", tmp_path / "payments.csv"
    stores.write_text(STORES, encoding="utf-8")
    payments.write_text(payments_csv(), encoding="utf-8")
    return stores, payments


def evaluate(stores: Path, payments: Path, *extra: str) -> int:
    return main(["targeting", "evaluate", "--stores", str(stores), "--payments", str(payments),
                 "--train-until", TRAIN_UNTIL, "--k", "2", *extra])


def test_evaluate_prints_hit_rates_and_writes_one_prediction_per_test_payment(files, tmp_path, capsys):
    predictions = tmp_path / "predictions.csv"
    assert evaluate(*files, "--predictions-out", str(predictions)) == 0
    printed = capsys.readouterr().out
    assert "24 payments before" in printed and "5 test payments" in printed
    assert "scored: 1 (left out of the hit rate: 1 whose next payment is at the same store, 3 with no next" in printed
    for name in ("model", "popularity", "random", "repeat_history", "transitions", "co_visitation",
                 "transitions_history_blend"):
        assert f"  {name} " in printed
    with predictions.open(newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["openid", "paid_at", "sub_mchid", "offered"]
    assert [row[:3] for row in rows[1:]] == [
        ["o1", "2026-07-03T02:00:00Z", "A"], ["o1", "2026-07-03T11:00:00+08:00", "B"],
        ["o2", "2026-07-04T10:00:00+08:00", "C"], ["o2", "2026-07-04T10:30:00+08:00", "C"],
        ["o3", "2026-07-05T10:00:00.250+08:00", "A"]]
    for row in rows[1:]:
        offered = row[3].split(" ")
        assert len(offered) == 2 and row[2] not in offered and set(offered) <= {"A", "B", "C", "D"}
    assert rows[1][3].split(" ")[0] == "B"  # every shopper went from A to B


def test_json_output_is_machine_readable(files, capsys):
    assert evaluate(*files, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["k"] == 2 and result["train_payments"] == 24 and result["test_payments"] == 5
    assert result["scored_test_payments"] == 1
    assert result["skipped"] == {"next_at_same_store": 1, "no_next_payment": 3}
    assert result["hit_rate"]["model"] == 1.0 and result["hits"]["model"] == 1
    assert set(result["hit_rate"]) >= {"model", "popularity", "random", "transitions_history_blend"}


def test_a_byte_order_mark_and_any_column_order_are_read(files, capsys):
    stores, payments = files
    stores.write_text("\ufeffcategory,floor,sub_mchid,name\n" + "".join(
        f"{c},{f},{s},{n}\n" for s, n, f, c in (line.split(",") for line in STORES.splitlines()[1:])),
        encoding="utf-8")
    payments.write_bytes(b"\xef\xbb\xbf" + payments_csv().encode())
    assert evaluate(stores, payments, "--json") == 0
    assert json.loads(capsys.readouterr().out)["train_payments"] == 24


@pytest.mark.parametrize("which, content, message", [
    ("payments", "openid,sub_mchid,paid_at\no1,A,2026-07-01T10:00:00+08:00\n", "missing column(s) amount_fen"),
    ("stores", "sub_mchid,name,category\nA,Alpha,cafe\n", "missing column(s) floor"),
    ("payments", "openid,sub_mchid,paid_at,amount_fen\no1,A,yesterday,100\n", "line 2: paid_at 'yesterday'"),
    ("payments", "openid,sub_mchid,paid_at,amount_fen\no1,A,2026-07-01T10:00:00,100\n", "has no UTC offset"),
    ("payments", "openid,sub_mchid,paid_at,amount_fen\no1,A,2026-07-01T10:00:00+08:00,1.5\n",
     "amount_fen '1.5' is not a whole number"),
    ("payments", "openid,sub_mchid,paid_at,amount_fen\no1,A,2026-07-01T10:00:00+08:00\n", "line 2: expected 4"),
    ("stores", "sub_mchid,name,floor,category\nA,Alpha,1F,cafe\nA,Again,2F,cafe\n", "listed twice"),
    ("payments", "openid,sub_mchid,paid_at,amount_fen\no1,A,2026-08-01T10:00:00+08:00,100\n",
     "no payment in"),
])
def test_bad_files_are_refused_with_the_reason_and_a_non_zero_exit(files, capsys, which, content, message):
    stores, payments = files
    (stores if which == "stores" else payments).write_text(content, encoding="utf-8")
    assert evaluate(stores, payments) != 0
    assert message in capsys.readouterr().err


def test_a_missing_file_and_a_bad_train_until_are_refused(files, tmp_path, capsys):
    stores, payments = files
    assert evaluate(stores, tmp_path / "absent.csv") != 0
    assert "absent.csv" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["targeting", "evaluate", "--stores", str(stores), "--payments", str(payments),
              "--train-until", "2026-09-29", "--k", "3"])
    assert exit_.value.code != 0
    assert "has no UTC offset" in capsys.readouterr().err


def test_simulate_writes_files_that_evaluate_reads(tmp_path, capsys):
    out = tmp_path / "mall"
    assert main(["targeting", "simulate", "--out", str(out), "--seed", "3", "--profile", "community",
                 "--shoppers", "40", "--days", "40"]) == 0
    with (out / "payments.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert rows and rows[0]["paid_at"].endswith("+08:00")
    capsys.readouterr()
    assert main(["targeting", "evaluate", "--stores", str(out / "stores.csv"), "--payments",
                 str(out / "payments.csv"), "--train-until", "2026-07-01T00:00:00+08:00", "--k", "3",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_payments"] > 0
