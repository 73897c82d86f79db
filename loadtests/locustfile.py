"""The payment hot path, driven the way a mall's mini-program backend drives it.

One Locust user is one checkout lane of the mall backend. Each task is one purchase:

  1. create order     signed POST /v3/pay/partner/transactions/jsapi (response signature checked)
  2. shopper pays     POST {emulator}/sandbox/transactions/pay (WeChat's "wx.requestPayment succeeded")
     ... the emulator notifies the gateway, the gateway applies the payment and its outbox
     notifies the mall backend ...
  3. notify receiver  the backend's notify_url verifies the signature and decrypts TRANSACTION.SUCCESS
     payment end-to-end  from the pay trigger until the receiver got the notification
  4. query            signed GET .../out-trade-no/{out_trade_no}, must say SUCCESS

Steps 3 and "payment end-to-end" are not HTTP calls made by the user, so they are reported
with `events.request.fire` (Locust's own hook) under their own names.

The notify receiver runs inside this Locust process (a gevent WSGI server on the port of
MALLPAY_LOAD_NOTIFY_URL), so it can hand each notification straight to the waiting user.
At exit it writes what it received, and the final per-step statistics, to
MALLPAY_LOAD_RESULT_FILE for the runner's checks.

Configuration (set by loadtests/run_load.py; all required unless a default is given):
  MALLPAY_LOAD_GATEWAY_URL   gateway base URL (also Locust's --host)
  MALLPAY_LOAD_EMULATOR_URL  WeChat Pay emulator base URL
  MALLPAY_LOAD_CLIENT_CONFIG path of a mall_app client's config.json (`mallpay client create`)
  MALLPAY_LOAD_SUB_MCHIDS    comma-separated stores to buy from
  MALLPAY_LOAD_NOTIFY_URL    the order's notify_url; the receiver listens on its host and port
  MALLPAY_LOAD_RESULT_FILE   where the tally and statistics go at exit (default: none written)
  MALLPAY_LOAD_NOTIFY_WAIT_S how long a user waits for its notification (default 30)
  MALLPAY_LOAD_THINK_S       pause between purchases of one user (default 0: closed loop)
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import gevent
from gevent.event import AsyncResult
from gevent.pywsgi import WSGIServer
from locust import FastHttpUser, constant, events, task

from gateway import signing

CREATE_PATH = "/v3/pay/partner/transactions/jsapi"
QUERY_PATH = "/v3/pay/partner/transactions/out-trade-no/{out_trade_no}?sp_mchid={sp_mchid}&sub_mchid={sub_mchid}"
PAY_PATH = "/sandbox/transactions/pay"

STEP_CREATE = "1 create order"
STEP_PAY = "2 shopper pays (emulator)"
STEP_NOTIFY = "3 notify receiver (verify+decrypt)"
STEP_QUERY = "4 query by out_trade_no"
STEP_END_TO_END = "payment end-to-end"

TOTAL_FEN_MIN = 100
TOTAL_FEN_MAX = 50_000
SHOPPERS = 500
NOTIFY_BODY_BYTES_MAX = 64 * 1024
HTTP_TIMEOUT_S = 30.0
NOTIFY_WAIT_S_DEFAULT = 30.0


@dataclass(frozen=True)
class LoadConfig:
    gateway_url: str
    emulator_url: str
    client_config: Path
    sub_mchids: tuple[str, ...]
    notify_url: str
    result_file: Path | None
    notify_wait_s: float
    think_s: float

    @classmethod
    def from_env(cls) -> "LoadConfig":
        env = os.environ
        missing = [name for name in ("MALLPAY_LOAD_GATEWAY_URL", "MALLPAY_LOAD_EMULATOR_URL",
                                     "MALLPAY_LOAD_CLIENT_CONFIG", "MALLPAY_LOAD_SUB_MCHIDS",
                                     "MALLPAY_LOAD_NOTIFY_URL") if not env.get(name)]
        if missing:
            raise SystemExit("locustfile: set " + ", ".join(missing) + " (loadtests/run_load.py does)")
        sub_mchids = tuple(s.strip() for s in env["MALLPAY_LOAD_SUB_MCHIDS"].split(",") if s.strip())
        assert sub_mchids, "MALLPAY_LOAD_SUB_MCHIDS names no store"
        result_file = env.get("MALLPAY_LOAD_RESULT_FILE")
        return cls(
            gateway_url=env["MALLPAY_LOAD_GATEWAY_URL"].rstrip("/"),
            emulator_url=env["MALLPAY_LOAD_EMULATOR_URL"].rstrip("/"),
            client_config=Path(env["MALLPAY_LOAD_CLIENT_CONFIG"]),
            sub_mchids=sub_mchids,
            notify_url=env["MALLPAY_LOAD_NOTIFY_URL"],
            result_file=Path(result_file) if result_file else None,
            notify_wait_s=float(env.get("MALLPAY_LOAD_NOTIFY_WAIT_S", NOTIFY_WAIT_S_DEFAULT)),
            think_s=float(env.get("MALLPAY_LOAD_THINK_S", "0")),
        )


@dataclass(frozen=True)
class ClientCredentials:
    """A mall_app client as `mallpay client create --out DIR` writes it (SPEC 8)."""

    mchid: str
    sp_mchid: str
    appid: str
    serial_no: str
    private_key: object
    apiv3_key: bytes
    gateway_public_key: object

    @classmethod
    def load(cls, config_path: Path) -> "ClientCredentials":
        config = json.loads(config_path.read_text())
        folder = config_path.parent
        return cls(
            mchid=config["mchid"], sp_mchid=config["sp_mchid"], appid=config["appid"],
            serial_no=config["merchant_serial_no"],
            private_key=signing.load_private_key((folder / config["merchant_private_key"]).read_bytes()),
            apiv3_key=config["apiv3_key"].encode(),
            gateway_public_key=signing.load_public_key((folder / config["public_key"]).read_bytes()),
        )


def signature_holds(public_key, headers, body: bytes) -> bool:
    """True when Wechatpay-Signature verifies over TS\\nNONCE\\nBODY\\n (SPEC 2.1)."""
    if headers is None:
        return False
    message = signing.response_message(headers.get("Wechatpay-Timestamp", ""),
                                       headers.get("Wechatpay-Nonce", ""), body)
    return signing.verify(public_key, message, headers.get("Wechatpay-Signature", ""))


@dataclass
class Arrival:
    at: float  # time.perf_counter() when the receiver got the request
    transaction: dict


@dataclass
class NotifyReceiver:
    """The mall backend's notify_url: verify, decrypt, hand over to the waiting user."""

    creds: ClientCredentials
    waiters: dict[str, AsyncResult] = field(default_factory=dict)
    notified: set[str] = field(default_factory=set)
    duplicates: int = 0
    rejected: int = 0
    unexpected: int = 0  # verified, but no user was waiting (e.g. its wait had timed out)
    server: WSGIServer | None = None

    def start(self, notify_url: str) -> None:
        parts = urlsplit(notify_url)
        assert parts.scheme == "http" and parts.hostname and parts.port, notify_url
        self.server = WSGIServer((parts.hostname, parts.port), self.wsgi, log=None)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=1)

    def expect(self, out_trade_no: str) -> AsyncResult:
        waiter = AsyncResult()
        self.waiters[out_trade_no] = waiter
        return waiter

    def forget(self, out_trade_no: str) -> None:
        self.waiters.pop(out_trade_no, None)

    def wsgi(self, environ, start_response):
        arrived_at = time.perf_counter()
        status, error = self._receive(environ, arrived_at)
        elapsed_ms = (time.perf_counter() - arrived_at) * 1000
        events.request.fire(request_type="NOTIFY", name=STEP_NOTIFY, response_time=elapsed_ms,
                            response_length=0, exception=error, context={})
        start_response(status, [("Content-Length", "0")])
        return [b""]

    def _receive(self, environ, arrived_at: float) -> tuple[str, Exception | None]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if environ["REQUEST_METHOD"] != "POST" or not 0 < length <= NOTIFY_BODY_BYTES_MAX:
            self.rejected += 1
            return "400 Bad Request", ValueError("not a notification")
        body = environ["wsgi.input"].read(length)
        headers = {"Wechatpay-Timestamp": environ.get("HTTP_WECHATPAY_TIMESTAMP", ""),
                   "Wechatpay-Nonce": environ.get("HTTP_WECHATPAY_NONCE", ""),
                   "Wechatpay-Signature": environ.get("HTTP_WECHATPAY_SIGNATURE", "")}
        if not signature_holds(self.creds.gateway_public_key, headers, body):
            self.rejected += 1
            return "401 Unauthorized", ValueError("notification signature does not verify")
        envelope = json.loads(body)
        resource = envelope["resource"]
        plain = signing.aes_gcm_decrypt(self.creds.apiv3_key, resource["ciphertext"], resource["nonce"],
                                        resource["associated_data"])
        if plain is None or envelope.get("event_type") != "TRANSACTION.SUCCESS":
            self.rejected += 1
            return "400 Bad Request", ValueError("notification does not decrypt or is not TRANSACTION.SUCCESS")
        transaction = json.loads(plain)
        out_trade_no = transaction["out_trade_no"]
        if out_trade_no in self.notified:
            self.duplicates += 1  # at-least-once delivery: a repeat is fine, acknowledge it
            return "204 No Content", None
        self.notified.add(out_trade_no)
        waiter = self.waiters.pop(out_trade_no, None)
        if waiter is None:
            self.unexpected += 1
        else:
            waiter.set(Arrival(arrived_at, transaction))
        return "204 No Content", None

    def tally(self) -> dict:
        return {"notified": sorted(self.notified), "duplicates": self.duplicates,
                "rejected": self.rejected, "unexpected": self.unexpected}


CONFIG: LoadConfig | None = None
CREDS: ClientCredentials | None = None
RECEIVER: NotifyReceiver | None = None
ENVIRONMENT = None
_USER_NUMBERS = itertools.count(1)
PERCENTILES = (0.5, 0.95, 0.99)


@events.init.add_listener
def _start_receiver(environment, **_kwargs) -> None:
    global CONFIG, CREDS, RECEIVER, ENVIRONMENT
    ENVIRONMENT = environment
    CONFIG = LoadConfig.from_env()
    CREDS = ClientCredentials.load(CONFIG.client_config)
    RECEIVER = NotifyReceiver(CREDS)
    RECEIVER.start(CONFIG.notify_url)


@events.quitting.add_listener
def _stop_receiver(environment, **_kwargs) -> None:
    if RECEIVER is not None:
        RECEIVER.stop()


@events.quit.add_listener
def _write_result(exit_code, **_kwargs) -> None:
    """The receiver's tally and the final per-step statistics. Written here, after the
    users have stopped: Locust rewrites its CSV once a second while running and not at
    exit, so the CSV can miss the purchases finished during --stop-timeout."""
    if RECEIVER is None or CONFIG is None or CONFIG.result_file is None or ENVIRONMENT is None:
        return
    steps = []
    for entry in ENVIRONMENT.stats.entries.values():
        steps.append({
            "type": entry.method, "name": entry.name, "count": entry.num_requests,
            "failures": entry.num_failures, "per_s": entry.total_rps,
            "max_ms": entry.max_response_time,
            **{f"p{round(p * 100)}_ms": entry.get_response_time_percentile(p) for p in PERCENTILES},
        })
    errors = [{"name": e.name, "error": str(e.error), "count": e.occurrences}
              for e in ENVIRONMENT.stats.errors.values()]
    result = {"exit_code": exit_code, "steps": steps, "errors": errors, **RECEIVER.tally()}
    CONFIG.result_file.write_text(json.dumps(result) + "\n")


class Failed(Exception):
    """A step answered something a mall backend would not accept."""


class MallBackendUser(FastHttpUser):
    """One checkout lane of the mall's mini-program backend."""

    network_timeout = HTTP_TIMEOUT_S
    connection_timeout = HTTP_TIMEOUT_S
    wait_time = constant(float(os.environ.get("MALLPAY_LOAD_THINK_S", "0")))

    def on_start(self) -> None:
        assert CONFIG is not None and CREDS is not None and RECEIVER is not None
        self.config, self.creds, self.receiver = CONFIG, CREDS, RECEIVER
        self.number = next(_USER_NUMBERS)
        self.purchases = itertools.count(1)
        self.rng = random.Random(self.number)

    @task
    def purchase(self) -> None:
        sub_mchid = self.rng.choice(self.config.sub_mchids)
        out_trade_no = f"LT{self.number:05d}{next(self.purchases):09d}"
        total_fen = self.rng.randint(TOTAL_FEN_MIN, TOTAL_FEN_MAX)
        if not self._create(sub_mchid, out_trade_no, total_fen):
            return
        arrival = self._pay_and_wait(sub_mchid, out_trade_no)
        if arrival is None:
            return
        self._query(sub_mchid, out_trade_no, arrival.transaction)

    # -- steps -------------------------------------------------------------------------

    def _create(self, sub_mchid: str, out_trade_no: str, total_fen: int) -> bool:
        body = {
            "sp_appid": self.creds.appid, "sp_mchid": self.creds.sp_mchid, "sub_mchid": sub_mchid,
            "description": "load test purchase", "out_trade_no": out_trade_no,
            "notify_url": self.config.notify_url, "amount": {"total": total_fen, "currency": "CNY"},
            "payer": {"sp_openid": f"oLoadShopper{self.rng.randrange(SHOPPERS):04d}"},
        }
        with self._signed("POST", CREATE_PATH, body, STEP_CREATE) as resp:
            reply = self._check(resp, 200)
            if reply is None:
                return False
            if not reply.get("prepay_id") or not reply.get("mall_info", {}).get("pay_params", {}).get("paySign"):
                resp.failure("create answered without prepay_id or pay_params")
                return False
        return True

    def _pay_and_wait(self, sub_mchid: str, out_trade_no: str) -> Arrival | None:
        waiter = self.receiver.expect(out_trade_no)
        started = time.perf_counter()
        with self.client.post(self.config.emulator_url + PAY_PATH, name=STEP_PAY, catch_response=True,
                              json={"sub_mchid": sub_mchid, "out_trade_no": out_trade_no}) as resp:
            if resp.status_code != 200:
                resp.failure(f"pay answered {resp.status_code}")
                self.receiver.forget(out_trade_no)
                return None
        try:
            # A plain gevent wait, not User.wait(): the user must not be stopped mid-purchase
            # (--stop-timeout lets the purchase finish, so every paid order gets checked).
            arrival = waiter.get(timeout=self.config.notify_wait_s)
        except gevent.Timeout:
            arrival = None
        if arrival is None:
            self.receiver.forget(out_trade_no)
            self._fire(STEP_END_TO_END, (time.perf_counter() - started) * 1000,
                       Failed(f"no notification within {self.config.notify_wait_s:.0f} s"))
            return None
        self._fire(STEP_END_TO_END, (arrival.at - started) * 1000, None)
        return arrival

    def _query(self, sub_mchid: str, out_trade_no: str, transaction: dict) -> None:
        target = QUERY_PATH.format(out_trade_no=out_trade_no, sp_mchid=self.creds.sp_mchid, sub_mchid=sub_mchid)
        with self._signed("GET", target, None, STEP_QUERY) as resp:
            reply = self._check(resp, 200)
            if reply is None:
                return
            if reply.get("trade_state") != "SUCCESS" or reply.get("transaction_id") != transaction["transaction_id"]:
                resp.failure(f"query says {reply.get('trade_state')} after TRANSACTION.SUCCESS")
            elif reply["amount"]["total"] != transaction["amount"]["total"]:
                resp.failure("query and notification disagree on the amount")

    # -- plumbing ----------------------------------------------------------------------

    def _signed(self, method: str, target: str, payload: dict | None, name: str):
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        authorization = signing.build_authorization(
            mchid=self.creds.mchid, serial_no=self.creds.serial_no, private_key=self.creds.private_key,
            method=method, target=target, body=body, timestamp=str(int(time.time())),
            nonce=signing.new_nonce(),
        )
        headers = {"Authorization": authorization, "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        return self.client.request(method, target, name=name, data=body if payload is not None else None,
                                   headers=headers, catch_response=True)

    def _check(self, resp, status: int) -> dict | None:
        """The JSON of a signed answer with the expected status; else marks the failure."""
        raw = resp.content or b""
        if resp.status_code != status:
            resp.failure(f"answered {resp.status_code}: {raw[:200]!r}")
            return None
        if not signature_holds(self.creds.gateway_public_key, resp.headers, raw):
            resp.failure("response signature does not verify")
            return None
        return json.loads(raw)

    def _fire(self, name: str, response_time_ms: float, error: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="FLOW", name=name, response_time=response_time_ms, response_length=0,
            exception=error, context={},
        )
