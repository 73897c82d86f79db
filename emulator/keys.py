"""Typed application keys shared by the emulator's resource modules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from emulator.bill_book import BillState
from emulator.points_book import PointsBook
from emulator.clock import SandboxClock
from emulator.config import EmulatorConfig
from emulator.funds import Funds
from emulator.jobs import DelayedJobs
from emulator.notify import Notifier
from emulator.refund_book import RefundBook
from emulator.split_book import SplitBook
from emulator.state import OrderBook

CONFIG = web.AppKey("emulator_config", EmulatorConfig)
CLOCK = web.AppKey("emulator_clock", Callable[[], datetime])
SANDBOX_CLOCK = web.AppKey("emulator_sandbox_clock", SandboxClock)
ORDERS = web.AppKey("emulator_orders", OrderBook)
NOTIFIER = web.AppKey("emulator_notifier", Notifier)
FUNDS = web.AppKey("emulator_funds", Funds)
SPLITS = web.AppKey("emulator_splits", SplitBook)
REFUNDS = web.AppKey("emulator_refunds", RefundBook)
JOBS = web.AppKey("emulator_jobs", DelayedJobs)
POINTS = web.AppKey("emulator_points", PointsBook)
BILLS = web.AppKey("emulator_bills", BillState)
