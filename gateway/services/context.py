"""What every use case needs, built once by the composition root (`gateway.app`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from gateway.identity import GatewayIdentity
from gateway.settings import Settings

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Services:
    settings: Settings
    pool: object  # asyncpg.Pool
    channel: object  # gateway.channel.client.WeChatPayChannel
    clock: Clock  # business time: with the emulator, it follows the sandbox clock
    identity: GatewayIdentity
    # Coupon issuing's in-process state (fitted next-store model, tasks in flight, the
    # outbox's wake-up); None where nothing issues coupons (command-line actions).
    coupons: object = None  # gateway.services.next_store.CouponRuntime
    signature_clock: Clock | None = None  # transport time for signatures; `clock` when None

    def __post_init__(self):
        if self.signature_clock is None:
            object.__setattr__(self, "signature_clock", self.clock)

    @property
    def channel_notify_url(self) -> str:
        return self.settings.public_url.rstrip("/") + "/channel/wechatpay/notify"
