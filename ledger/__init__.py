"""The double-entry ledger: a pure core (accounts, transfers, invariants) and `repo.py`.

The core never reads the clock, makes ids, draws random numbers or touches I/O; callers
pass those in. Amounts are `int` fen (or points for `PTS`).
"""
