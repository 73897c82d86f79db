"""Mall points (SPEC 7): earned per paid yuan by store rule, reversed by refunds, kept in
the ledger in PTS. Pure: no clock, no I/O; `repo.py` holds the SQL."""
