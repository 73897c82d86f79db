"""The gateway's own bills of day D are served from 10:00 China time on D+1, as WeChat's
are (gateway.shapes.bills.BILL_READY_AFTER): before, STATEMENT_CREATING; at 10:00
the day's bill (here an empty day: NO_STATEMENT_EXIST)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from types import SimpleNamespace

import pytest

from gateway.services import onboarding, own_bills
from gateway.shapes import bills
from gateway.wire import CHINA_TZ

MALL = "1900000100"
DAY = date(2026, 11, 30)


@pytest.mark.parametrize("bill", ["trade", "profitsharing"])
async def test_a_days_bill_is_served_from_ten_the_next_morning(db_pool, bill):
    await onboarding.ensure_mall(db_pool, MALL, "wxmall", "Test mall")
    request = own_bills.BillRequest(bill=bill, bill_on=DAY, sub_mchid=None, gzip_it=False, client_id="c")
    ten = datetime(2026, 12, 1, 10, 0, tzinfo=CHINA_TZ)
    assert bills.ready_at(DAY) == ten
    for early in (datetime(2026, 11, 30, 23, 59, tzinfo=CHINA_TZ), datetime(2026, 12, 1, 0, 0, 1, tzinfo=CHINA_TZ),
                  ten - timedelta(microseconds=1)):
        with pytest.raises(own_bills.NotReady):
            await own_bills.bill_bytes(SimpleNamespace(clock=lambda at=early: at, pool=db_pool), MALL, request)
    with pytest.raises(own_bills.NoStatement):  # ready, and nothing happened that day
        await own_bills.bill_bytes(SimpleNamespace(clock=lambda: ten, pool=db_pool), MALL, request)
