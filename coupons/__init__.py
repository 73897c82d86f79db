"""Cross-store coupons: targeting the next purchase (pure cores, no I/O, no clock)."""
