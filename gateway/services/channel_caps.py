"""The channel's own cap for each store (WeChat's merchant-configs `max_ratio`).

A split above it would be refused by the channel after the gateway accepted it, so the
cap the gateway enforces is the lower of the contract's and the channel's. The channel is
asked again once its last answer is `channel_cap_fresh_s` old, and every time while its
last answer is below the contract's (a store whose cap was just approved higher is being
set up at the channel too); when it cannot be reached the last answer stands (and without
one, the contract's cap alone).
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from gateway.channel import ChannelError
from splitting import repo
from gateway.repo import tenants as tenants_repo
from gateway.services.context import Services

log = structlog.get_logger(__name__)


async def refresh(svc: Services, mall_id: str, sub_mchid: str) -> int | None:
    """The channel's cap in bps, asked again when stale; None when never learned."""
    now = svc.clock()
    async with svc.pool.acquire() as conn:
        known = await repo.channel_cap(conn, mall_id, sub_mchid)
        tenant = await tenants_repo.tenant(conn, mall_id, sub_mchid)
    if (known is not None and tenant is not None and known["max_ratio_bps"] >= tenant.contract.max_ratio_bps
            and now - known["checked_at"] < timedelta(seconds=svc.settings.channel_cap_fresh_s)):
        return known["max_ratio_bps"]
    try:
        asked = await svc.channel.max_ratio(sub_mchid)
    except ChannelError as exc:
        log.warning("channel_cap_unknown", sub_mchid=sub_mchid, code=exc.code)
        return None if known is None else known["max_ratio_bps"]
    async with svc.pool.acquire() as conn:
        await repo.save_channel_cap(conn, mall_id, sub_mchid, asked, now)
    return asked


async def known(conn, mall_id: str, sub_mchid: str) -> int | None:
    """Inside a transaction: the channel's cap as last learned, without asking."""
    row = await repo.channel_cap(conn, mall_id, sub_mchid)
    return None if row is None else row["max_ratio_bps"]
