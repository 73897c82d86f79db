"""WeChat-shaped JSON and CSV built from our records and read back (wire formats only)."""
