"""Cross-store coupons (SPEC 7): targeting the next purchase, campaign rules, issuance
choice, redemption, uplift. Pure cores: no clock, no random numbers, no I/O; `repo.py`
holds the SQL."""
