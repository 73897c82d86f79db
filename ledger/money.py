"""Yuan strings, for exports and display only: the ledger itself counts in integer fen."""

from __future__ import annotations

FEN_PER_YUAN = 100


def yuan(amount_fen: int) -> str:
    """1234 → "12.34", -5 → "-0.05": exact, never through floating point."""
    if amount_fen == 0:  # most of a statement's cells; the common case stays cheap
        return "0.00"
    assert isinstance(amount_fen, int) and not isinstance(amount_fen, bool), amount_fen
    sign = "-" if amount_fen < 0 else ""
    whole, cents = divmod(abs(amount_fen), FEN_PER_YUAN)
    return f"{sign}{whole}.{cents:02d}"
