"""The pure matcher: every ref ends matched or with each way it differs, and says why."""

from __future__ import annotations

from ledger.reconciliation import Bill, Finding, Line, match


def pay(ref: str, amount: int, fee: int | None = 6, state: str = "SUCCESS") -> Line:
    return Line(ref, ref.split("/")[0], "payment", amount, fee, state)


def test_each_class_is_found_once():
    ours = {l.ref: l for l in (pay("1/A", 100), pay("1/B", 200), pay("1/C", 300), pay("1/D", 400),
                               pay("1/E", 500))}
    theirs = [pay("1/A", 100), pay("1/B", 201), pay("1/C", 300, fee=9), pay("1/D", 400, state="REVOKED"),
              pay("1/F", 600)]
    outcome = match(Bill.TRADE, ours, theirs)
    found = {(i.finding, i.ref) for i in outcome.items}
    assert found == {(Finding.AMOUNT_MISMATCH, "1/B"), (Finding.FEE_MISMATCH, "1/C"),
                     (Finding.STATUS_MISMATCH, "1/D"), (Finding.MISSING_CHANNEL, "1/E"),
                     (Finding.MISSING_OURS, "1/F")}
    assert outcome.matched == 1
    counts = outcome.counts()
    assert counts == {"matched": 1, "missing_ours": 1, "missing_channel": 1, "amount_mismatch": 1,
                      "status_mismatch": 1, "fee_mismatch": 1}
    b = next(i for i in outcome.items if i.ref == "1/B")
    assert "2.01" in b.what and "2.00" in b.what and "never corrected automatically" in b.action


def test_several_differences_of_one_line_are_each_reported():
    outcome = match(Bill.TRADE, {"1/A": pay("1/A", 100)}, [pay("1/A", 150, fee=1, state="REFUND")])
    assert sorted(i.finding.value for i in outcome.items) == ["amount_mismatch", "fee_mismatch", "status_mismatch"]
    assert outcome.matched == 0


def test_unknown_amounts_are_not_compared_and_duplicates_sum():
    unfreeze = Line("1/unfreeze/UF1", "1", "unfreeze", None, None, "SUCCESS")
    outcome = match(Bill.SPLITS, {unfreeze.ref: unfreeze},
                    [Line("1/unfreeze/UF1", "1", "unfreeze", 500, None, "SUCCESS")])
    assert outcome.matched == 1 and not outcome.items
    doubled = match(Bill.TRADE, {"1/A": pay("1/A", 200, fee=12)}, [pay("1/A", 100), pay("1/A", 100)])
    assert doubled.matched == 1


def test_empty_sides_match_nothing():
    assert match(Bill.FUND_FLOW, {}, []).counts()["matched"] == 0
