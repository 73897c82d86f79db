"""What a successful payment posts: the shopper's money into the store, less the fee."""

from __future__ import annotations

from ledger import accounts
from ledger.transfers import Move, Transfer, transfer_of

BPS_DENOMINATOR = 10_000
PAYMENT = "payment"


def channel_fee_fen(total_fen: int, fee_rate_bps: int) -> int:
    """The channel's fee, rounded half up to the fen as WeChat Pay rounds it.

    Integer arithmetic only: floor((total * bps + 5000) / 10000).
    """
    assert total_fen >= 0 and 0 <= fee_rate_bps <= BPS_DENOMINATOR
    return (total_fen * fee_rate_bps + BPS_DENOMINATOR // 2) // BPS_DENOMINATOR


def payment_ref(sub_mchid: str, out_trade_no: str) -> str:
    return f"{sub_mchid}/{out_trade_no}"


def payment_transfer(
    *, sub_mchid: str, out_trade_no: str, total_fen: int, fee_fen: int, profit_sharing: bool
) -> Transfer:
    """Shopper pays `total_fen`; the fee (`channel_fee_fen`, computed once by the caller,
    who also opens the order's funds with it) goes to the channel, the rest to the store.

    With profit sharing the store's share stays frozen at the channel for splitting;
    without, the channel settles it to the store's available balance directly.
    """
    assert total_fen > 0 and 0 <= fee_fen <= total_fen
    store = accounts.tenant_frozen(sub_mchid) if profit_sharing else accounts.tenant_available(sub_mchid)
    moves = [
        Move(accounts.PAYER, store, total_fen - fee_fen),
        Move(accounts.PAYER, accounts.CHANNEL_FEES, fee_fen),
    ]
    return transfer_of(PAYMENT, payment_ref(sub_mchid, out_trade_no), accounts.CNY, moves)
