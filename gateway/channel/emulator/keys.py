"""Typed application keys shared by the emulator's resource modules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from gateway.channel.emulator.config import EmulatorConfig
from gateway.channel.emulator.funds import Funds
from gateway.channel.emulator.jobs import DelayedJobs
from gateway.channel.emulator.notify import Notifier
from gateway.channel.emulator.refund_book import RefundBook
from gateway.channel.emulator.split_book import SplitBook
from gateway.channel.emulator.state import OrderBook

CONFIG = web.AppKey("emulator_config", EmulatorConfig)
CLOCK = web.AppKey("emulator_clock", Callable[[], datetime])
ORDERS = web.AppKey("emulator_orders", OrderBook)
NOTIFIER = web.AppKey("emulator_notifier", Notifier)
FUNDS = web.AppKey("emulator_funds", Funds)
SPLITS = web.AppKey("emulator_splits", SplitBook)
REFUNDS = web.AppKey("emulator_refunds", RefundBook)
JOBS = web.AppKey("emulator_jobs", DelayedJobs)
