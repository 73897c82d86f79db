"""Revenue splitting: contract rules, caps and allocation of ratios to fen (pure)."""
