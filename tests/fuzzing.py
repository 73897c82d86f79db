"""Fuzzing every operation of the gateway's OpenAPI document with schemathesis, through a
signing layer: each generated request is prepared exactly as it will be sent, then signed
over that method, raw target and body with a registered client's key (what the
wechatpayv3 SDK does), so fuzzed input reaches the handlers instead of stopping at 401.

Checks on every answer: never a 5xx; every error is a signed WeChat-style body
(`code`, `message`, `detail`); a refused request changes no row of any state table.
Shared by tests/e2e/test_fuzz.py (a bounded CI budget) and loadtests/fuzz_run.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from gateway import signing
from gateway.api.openapi import DOCUMENT
from tests.support import STATE_TABLES_SQL

REQUEST_TIMEOUT_S = 10.0
ADMIN_PREFIX = "/v3/mall/"


@dataclass
class FuzzReport:
    requests_sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    by_operation: Counter = field(default_factory=Counter)

    def fail(self, what: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(what)


@dataclass
class Target:
    """Where and as whom to send: the gateway's URL, a mall_app and an admin client
    (credentials as tests.support.ClientCredentials), the gateway's public key, and a
    callable returning the state tables' row counts (run on the gateway's event loop)."""

    base_url: str
    app: object
    admin: object
    gateway_public_key: object
    count_rows: object  # () -> dict[str, int], blocking


def operations():
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    return [result.ok() for result in schema.get_all_operations()]


def _body_bytes(case) -> tuple[bytes, str | None]:
    body = getattr(case, "body", None)
    if body is None or type(body).__name__ == "NotSet":
        return b"", None
    if isinstance(body, (bytes, bytearray)):
        return bytes(body), case.media_type or "application/json"
    try:
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass"), "application/json"
    except (TypeError, ValueError):
        return json.dumps(body, ensure_ascii=True, default=str).encode(), "application/json"


def signed_request(target: Target, case) -> requests.PreparedRequest:
    """The request as it goes on the wire, then signed over exactly those bytes."""
    creds = target.admin if case.path.startswith(ADMIN_PREFIX) else target.app
    body, media_type = _body_bytes(case)
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"
               and isinstance(v, str) and v.isascii() and "\n" not in v and "\r" not in v}
    headers["Accept"] = "application/json"
    if media_type:
        headers["Content-Type"] = media_type
    prepared = requests.Request(case.method, target.base_url + case.formatted_path, params=case.query or None,
                                data=body or None, headers=headers).prepare()
    sent_body = prepared.body or b""
    if isinstance(sent_body, str):
        sent_body = sent_body.encode()
    prepared.headers["Authorization"] = signing.build_authorization(
        mchid=creds.mchid, serial_no=creds.serial_no, private_key=creds.private_key, method=case.method,
        target=prepared.path_url, body=sent_body, timestamp=str(int(time.time())), nonce=signing.new_nonce())
    return prepared


def check_answer(target: Target, report: FuzzReport, label: str, response: requests.Response,
                 rows_before: dict, rows_after_of) -> None:
    status = response.status_code
    report.statuses[status] += 1
    if status >= 500:
        report.fail(f"{label}: {status} {response.content[:200]!r}")
        return
    if status < 400:
        return
    if label.split(" ", 1)[1].startswith("/channel/"):
        # The channel's endpoint answers WeChat Pay, unsigned, {"code": "FAIL", ...}.
        if response.json().get("code") != "FAIL":
            report.fail(f"{label}: {status} {response.content[:200]!r}")
        return
    headers = response.headers
    message = signing.response_message(headers.get("Wechatpay-Timestamp", ""), headers.get("Wechatpay-Nonce", ""),
                                       response.content)
    if not signing.verify(target.gateway_public_key, message, headers.get("Wechatpay-Signature", "")):
        report.fail(f"{label}: {status} error not signed")
    try:
        body = json.loads(response.content)
        assert isinstance(body["code"], str) and isinstance(body["message"], str)
        assert isinstance(body.get("detail", {}), dict)
    except (ValueError, KeyError, AssertionError, TypeError):
        report.fail(f"{label}: {status} not a WeChat error body: {response.content[:200]!r}")
    after = rows_after_of()
    if after != rows_before:
        changed = {k: (rows_before.get(k), v) for k, v in after.items() if rows_before.get(k) != v}
        report.fail(f"{label}: {status} refused but changed rows {changed}")


def fuzz(target: Target, *, examples_per_operation: int, budget_s: float, seed: int = 0) -> FuzzReport:
    """Blocking: run from a thread while the gateway serves. Each operation gets up to
    `examples_per_operation` positive and negative cases, all within `budget_s`."""
    report = FuzzReport()
    session = requests.Session()
    deadline = time.monotonic() + budget_s
    ops = operations()
    for op in ops:
        if time.monotonic() > deadline:
            break
        label = f"{op.method.upper()} {op.path}"
        strategy = st.one_of(op.as_strategy(generation_mode=GenerationMode.POSITIVE),
                             op.as_strategy(generation_mode=GenerationMode.NEGATIVE))

        @settings(max_examples=examples_per_operation, deadline=None, database=None, derandomize=seed == 0,
                  suppress_health_check=list(HealthCheck), phases=(Phase.explicit, Phase.generate))
        @given(strategy)
        def one(case):
            if time.monotonic() > deadline:
                return
            before = target.count_rows()
            try:
                response = session.send(signed_request(target, case), timeout=REQUEST_TIMEOUT_S)
            except requests.RequestException as exc:
                report.fail(f"{label}: {type(exc).__name__}")
                return
            report.requests_sent += 1
            report.by_operation[label] += 1
            check_answer(target, report, label, response, before, target.count_rows)

        one()
    session.close()
    return report


def row_counter(pool, loop: asyncio.AbstractEventLoop):
    """A blocking `count_rows()` for the fuzz thread, run on the gateway's loop: every
    state table's rows in one statement."""
    holder: dict = {}

    async def count() -> dict:
        async with pool.acquire() as conn:
            if "sql" not in holder:
                names = [r["tablename"] for r in await conn.fetch(STATE_TABLES_SQL)]
                holder["names"] = names
                # Names come from the catalogue, not from input; quoted as identifiers.
                holder["sql"] = "SELECT " + ", ".join(f'(SELECT count(*) FROM "{n}")' for n in names)
            row = await conn.fetchrow(holder["sql"])
        return dict(zip(holder["names"], row))

    return lambda: asyncio.run_coroutine_threadsafe(count(), loop).result(30)
