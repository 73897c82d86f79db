"""Typed application keys shared by the emulator's resource modules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from gateway.channel.emulator.config import EmulatorConfig
from gateway.channel.emulator.notify import Notifier
from gateway.channel.emulator.state import OrderBook

CONFIG = web.AppKey("emulator_config", EmulatorConfig)
CLOCK = web.AppKey("emulator_clock", Callable[[], datetime])
ORDERS = web.AppKey("emulator_orders", OrderBook)
NOTIFIER = web.AppKey("emulator_notifier", Notifier)
