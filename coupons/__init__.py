"""Cross-store coupons (SPEC 7): campaign rules, issuance choice, redemption, uplift.

Pure: no clock, no random numbers, no I/O; `repo.py` holds the SQL.
"""
