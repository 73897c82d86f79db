"""WeChat Pay's identifier formats, shared by the request schemas (`gateway.api.requests`)
and the services that check identifiers given to them by other means (CLI flags)."""

from __future__ import annotations

import re

OUT_TRADE_NO_RE = re.compile(r"[0-9A-Za-z_*|-]{6,32}")  # WeChat Pay partner JSAPI: [0-9A-Za-z_\-|*]
# out_order_no, out_return_no and out_refund_no: 1..64 of digits, letters, _-|*@.
OUT_NO_RE = re.compile(r"[0-9A-Za-z_*@|-]{1,64}")
TRANSACTION_ID_RE = re.compile(r"[0-9]{1,32}")
MCHID_RE = re.compile(r"[0-9]{1,32}")  # WeChat merchant ids are digits
APPID_RE = re.compile(r"[0-9A-Za-z_-]{1,32}")
OPENID_RE = re.compile(r"[0-9A-Za-z_-]{1,128}")
GUIDE_ID_RE = re.compile(r"[0-9A-Za-z_-]{1,32}")
COUPON_ID_RE = re.compile(r"[0-9A-Za-z]{1,64}")
