"""ledger/transfers.py and ledger/payments.py: balanced transfers, netting, the fee rule."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import accounts
from ledger.payments import channel_fee_fen, payment_transfer
from ledger.transfers import Move, Posting, Transfer, UnbalancedTransfer, transfer_of

STORE = "1900000201"


def postings(*pairs) -> tuple[Posting, ...]:
    return tuple(Posting(account, amount) for account, amount in pairs)


# -- transfers ---------------------------------------------------------------------------

def test_balanced_transfer_is_accepted():
    transfer = Transfer("payment", "s/o", "CNY", postings(("payer", -100), ("tenant:s:available", 100)))
    assert transfer.accounts == ["payer", "tenant:s:available"]
    assert transfer.amounts_fen == [-100, 100]


@pytest.mark.parametrize("pairs", [
    (("payer", -100), ("tenant:s:available", 99)),
    (("payer", -100), ("tenant:s:available", 101)),
    (("payer", -1), ("a", 1), ("b", 1)),
])
def test_unbalanced_transfer_raises(pairs):
    with pytest.raises(UnbalancedTransfer):
        Transfer("payment", "s/o", "CNY", postings(*pairs))


def test_zero_posting_is_rejected():
    with pytest.raises(AssertionError):
        Transfer("payment", "s/o", "CNY", postings(("payer", 0), ("a", 0)))
    with pytest.raises(AssertionError):
        Transfer("payment", "s/o", "CNY", postings(("payer", -5), ("a", 5), ("b", 0)))


@pytest.mark.parametrize("pairs", [(), (("payer", 0),), (("payer", 5),)])
def test_fewer_than_two_postings_is_rejected(pairs):
    with pytest.raises(AssertionError):
        Transfer("payment", "s/o", "CNY", postings(*pairs))


def test_same_account_twice_is_rejected():
    with pytest.raises(AssertionError):
        Transfer("payment", "s/o", "CNY", postings(("payer", -5), ("payer", 5)))


@pytest.mark.parametrize("amount", [1.0, True])
def test_non_integer_amount_is_rejected(amount):
    with pytest.raises(AssertionError):
        Transfer("payment", "s/o", "CNY", postings(("payer", -1), ("a", amount)))


def test_unknown_currency_is_rejected():
    with pytest.raises(AssertionError):
        Transfer("payment", "s/o", "USD", postings(("payer", -1), ("a", 1)))


def test_transfer_of_nets_moves_per_account_in_first_seen_order():
    transfer = transfer_of("split", "s/o", "CNY", [
        Move("tenant:s:frozen", "mall:commission", 100),
        Move("tenant:s:frozen", "guide:g1:rewards", 30),
        Move("mall:commission", "guide:g1:rewards", 10),
        Move("tenant:s:frozen", "tenant:s:available", 0),  # zero moves are dropped
    ])
    assert dict(zip(transfer.accounts, transfer.amounts_fen)) == {
        "tenant:s:frozen": -130, "mall:commission": 90, "guide:g1:rewards": 40,
    }
    assert transfer.accounts == ["tenant:s:frozen", "mall:commission", "guide:g1:rewards"]


def test_transfer_of_drops_accounts_that_net_to_zero():
    transfer = transfer_of("split", "s/o", "CNY", [Move("a", "b", 50), Move("b", "c", 50)])
    assert dict(zip(transfer.accounts, transfer.amounts_fen)) == {"a": -50, "c": 50}


def test_transfer_of_moves_that_cancel_out_is_no_transfer():
    with pytest.raises(AssertionError):
        transfer_of("split", "s/o", "CNY", [Move("a", "b", 50), Move("b", "a", 50)])


def test_transfer_of_negative_move_is_rejected():
    with pytest.raises(AssertionError):
        transfer_of("split", "s/o", "CNY", [Move("a", "b", -1)])


# -- the channel fee -------------------------------------------------------------------------

@pytest.mark.parametrize("total_fen, fee_rate_bps, fee_fen", [
    (83, 60, 0),          # 0.498 fen
    (84, 60, 1),          # 0.504 fen
    (99, 50, 0),          # 0.495 fen
    (100, 50, 1),         # exactly half a fen: rounds up
    (250, 60, 2),         # 1.5 fen: up
    (249, 60, 1),         # 1.494 fen
    (2599, 60, 16),       # 15.594 fen
    (1, 0, 0),
    (1, 10_000, 1),
    (100_000_000, 60, 600_000),
    (0, 60, 0),
])
def test_channel_fee_rounds_half_up(total_fen, fee_rate_bps, fee_fen):
    assert channel_fee_fen(total_fen, fee_rate_bps) == fee_fen


@given(total_fen=st.integers(0, 10**10), fee_rate_bps=st.integers(0, 10_000))
def test_channel_fee_is_the_exact_fee_rounded_half_up(total_fen, fee_rate_bps):
    exact = Fraction(total_fen * fee_rate_bps, 10_000)
    fee = channel_fee_fen(total_fen, fee_rate_bps)
    assert isinstance(fee, int)
    assert exact - Fraction(1, 2) < fee <= exact + Fraction(1, 2)
    assert 0 <= fee <= total_fen


# -- what a payment posts ----------------------------------------------------------------------

def test_payment_without_profit_sharing_goes_to_available():
    transfer = payment_transfer(sub_mchid=STORE, out_trade_no="ORDER-1", total_fen=2599, fee_fen=channel_fee_fen(2599, 60),
                                profit_sharing=False)
    assert (transfer.kind, transfer.ref, transfer.currency) == ("payment", f"{STORE}/ORDER-1", "CNY")
    assert dict(zip(transfer.accounts, transfer.amounts_fen)) == {
        accounts.PAYER: -2599, accounts.tenant_available(STORE): 2583, accounts.CHANNEL_FEES: 16,
    }


def test_payment_with_profit_sharing_stays_frozen():
    transfer = payment_transfer(sub_mchid=STORE, out_trade_no="ORDER-1", total_fen=10_000, fee_fen=channel_fee_fen(10_000, 60),
                                profit_sharing=True)
    assert dict(zip(transfer.accounts, transfer.amounts_fen)) == {
        accounts.PAYER: -10_000, accounts.tenant_frozen(STORE): 9_940, accounts.CHANNEL_FEES: 60,
    }


def test_payment_too_small_for_a_fee_has_no_fee_posting():
    transfer = payment_transfer(sub_mchid=STORE, out_trade_no="ORDER-1", total_fen=83, fee_fen=channel_fee_fen(83, 60),
                                profit_sharing=False)
    assert dict(zip(transfer.accounts, transfer.amounts_fen)) == {
        accounts.PAYER: -83, accounts.tenant_available(STORE): 83,
    }


def test_payment_of_zero_is_refused():
    with pytest.raises(AssertionError):
        payment_transfer(sub_mchid=STORE, out_trade_no="ORDER-1", total_fen=0, fee_fen=0,
                         profit_sharing=False)


@given(total_fen=st.integers(1, 100_000_000), fee_rate_bps=st.integers(0, 1_000), profit_sharing=st.booleans())
def test_payment_conserves_money(total_fen, fee_rate_bps, profit_sharing):
    transfer = payment_transfer(sub_mchid=STORE, out_trade_no="ORDER-1", total_fen=total_fen,
                                fee_fen=channel_fee_fen(total_fen, fee_rate_bps), profit_sharing=profit_sharing)
    posted = dict(zip(transfer.accounts, transfer.amounts_fen))
    assert sum(posted.values()) == 0
    assert posted[accounts.PAYER] == -total_fen
    fee = posted.get(accounts.CHANNEL_FEES, 0)
    store = accounts.tenant_frozen(STORE) if profit_sharing else accounts.tenant_available(STORE)
    assert 0 <= fee <= total_fen
    assert fee == channel_fee_fen(total_fen, fee_rate_bps)
    assert posted.get(store, 0) == total_fen - fee
    assert set(posted) <= {accounts.PAYER, accounts.CHANNEL_FEES, store}
    assert all(amount != 0 for amount in posted.values())
