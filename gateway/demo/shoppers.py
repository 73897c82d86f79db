"""Simulated shoppers: each picks a store, orders, pays in WeChat (the emulator) or walks
away (the order is closed), and waits until the mall backend sees the order paid."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from gateway.demo.backend import MallBackend
from gateway.demo.seed import DemoStore

ABANDON_RATE = 0.05
GUIDED_RATE = 0.5  # shoppers served by a shopping guide, where the store has guides
REFUND_RATE = 0.06  # purchases brought back (half of them in part)
PAID_WAIT_S_MAX = 15.0
POLL_INTERVAL_S = 0.05


@dataclass
class Tally:
    created: int = 0
    paid: int = 0
    paid_fen: int = 0
    closed: int = 0
    franchise_splits: int = 0
    refunds: int = 0
    refunded_fen: int = 0
    failures: list = field(default_factory=list)
    to_refund: list = field(default_factory=list)  # (store, transaction_id, total_fen)


async def shop(*, shopper: int, backend: MallBackend, emulator_url: str, stores: list[DemoStore],
               settings, notify_url: str, deadline: float, tally: Tally, rng: random.Random) -> None:
    sequence = 0
    while time.monotonic() < deadline:
        sequence += 1
        store = rng.choice(stores)
        total_fen = rng.randint(*store.ticket_fen)
        out_trade_no = f"D{shopper:03d}{sequence:06d}{rng.randrange(16**6):06x}"
        try:
            await _one_purchase(backend, emulator_url, store, settings, notify_url, out_trade_no,
                                total_fen, tally, rng)
        except Exception as exc:  # a demo reports every failure and keeps shopping
            tally.failures.append(f"{out_trade_no}: {type(exc).__name__}: {exc}")
            await asyncio.sleep(0.2)


async def _one_purchase(backend, emulator_url, store, settings, notify_url, out_trade_no,
                        total_fen, tally, rng) -> None:
    body = {
        "sp_appid": settings.sp_appid, "sp_mchid": settings.sp_mchid, "sub_mchid": store.sub_mchid,
        "description": f"{store.name} purchase", "out_trade_no": out_trade_no,
        "notify_url": notify_url, "amount": {"total": total_fen, "currency": "CNY"},
        "payer": {"sp_openid": f"oDemoShopper{rng.randrange(500):04d}"},
        "settle_info": {"profit_sharing": True},
    }
    if store.guide_id and rng.random() < GUIDED_RATE:
        body["mall_info"] = {"guide_id": store.guide_id}
    status, reply = await backend.call("POST", "/v3/pay/partner/transactions/jsapi", body)
    if status != 200:
        raise RuntimeError(f"create answered {status} {reply}")
    tally.created += 1
    if rng.random() < ABANDON_RATE:
        status, reply = await backend.call(
            "POST", f"/v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close",
            {"sp_mchid": settings.sp_mchid, "sub_mchid": store.sub_mchid})
        if status != 204:
            raise RuntimeError(f"close answered {status} {reply}")
        tally.closed += 1
        return
    async with backend.session.post(emulator_url + "/sandbox/transactions/pay",
                                    json={"sub_mchid": store.sub_mchid, "out_trade_no": out_trade_no}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"the shopper's payment answered {resp.status}")
    transaction_id = await _wait_paid(backend, settings, store, out_trade_no)
    tally.paid += 1
    tally.paid_fen += total_fen
    if store.franchise:
        await _brand_split(backend, store, transaction_id, total_fen, tally)
    if rng.random() < REFUND_RATE:
        tally.to_refund.append((store, transaction_id, total_fen))


async def _wait_paid(backend, settings, store, out_trade_no) -> None:
    """What a mini-program does after wx.requestPayment: ask until the order shows paid."""
    target = (f"/v3/pay/partner/transactions/out-trade-no/{out_trade_no}"
              f"?sp_mchid={settings.sp_mchid}&sub_mchid={store.sub_mchid}")
    waited_from = time.monotonic()
    delay_s = POLL_INTERVAL_S
    while time.monotonic() - waited_from < PAID_WAIT_S_MAX:
        status, reply = await backend.call("GET", target)
        if status == 200 and reply["trade_state"] == "SUCCESS":
            return reply["transaction_id"]
        await asyncio.sleep(delay_s)
        delay_s = min(delay_s * 2, 1.0)
    raise RuntimeError("not paid in time")


async def _brand_split(backend, store, transaction_id: str, total_fen: int, tally: Tally) -> None:
    """The franchise's brand headquarters takes its share; the rest goes to the store."""
    from gateway.demo.seed import BRAND_HQ_MCHID, BRAND_HQ_SHARE_BPS
    share = total_fen * BRAND_HQ_SHARE_BPS // 10_000
    # Right after payment the channel still refuses splits; the gateway accepts the
    # request (PROCESSING) and retries on its own until the channel takes it.
    status, reply = await backend.call("POST", "/v3/profitsharing/orders", {
        "sub_mchid": store.sub_mchid, "transaction_id": transaction_id,
        "out_order_no": f"BRAND{transaction_id[-20:]}", "unfreeze_unsplit": True,
        "receivers": [{"type": "MERCHANT_ID", "account": BRAND_HQ_MCHID, "amount": share,
                       "description": "品牌总部分成"}]})
    if status != 200:
        raise RuntimeError(f"brand split answered {status} {reply}")
    tally.franchise_splits += 1


async def refund_some(backend, tally: Tally, rng: random.Random) -> None:
    """Shoppers bring purchases back after the splits were made: merchant receivers return
    their part first, the guide's part is recorded as owed by the guide."""
    for index, (store, transaction_id, total_fen) in enumerate(tally.to_refund):
        amount = total_fen if rng.random() < 0.5 else max(1, total_fen // 3)
        status, reply = await backend.call("POST", "/v3/refund/domestic/refunds", {
            "sub_mchid": store.sub_mchid, "transaction_id": transaction_id,
            "out_refund_no": f"RF{transaction_id[-24:]}", "reason": "顾客退货",
            "amount": {"refund": amount, "total": total_fen, "currency": "CNY"}})
        if status == 200:
            tally.refunds += 1
            tally.refunded_fen += amount
        else:
            tally.failures.append(f"refund of {transaction_id}: {status} {reply}")
