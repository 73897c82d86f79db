"""`mallpay` — the command line of the gateway (SPEC 8).

serve | emulator | demo | migrate | client create | tenant create/list | reconcile [show] | statement | export | targeting
Configuration comes from the environment (see the README); flags override a few.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import sys
from datetime import date
from pathlib import Path

from gateway import signing
from gateway import targeting_files
from gateway.cli_jobs import add_jobs_commands
from gateway.settings import PORT_MAX, Settings, SettingsError
from gateway.wire import iso_day
from ledger.statements import DAY_MAX, DAY_MIN


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"mallpay: {exc}", file=sys.stderr)
        return 2
    try:
        status = args.run(settings, args) or 0
        sys.stdout.flush()  # a reader that stopped early shows here, not in the flush at exit
        return status
    except KeyboardInterrupt:  # Ctrl-C: the command's own clean-up has run; no traceback
        print("mallpay: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `mallpay statement ... | head`: the reader stopped reading
        # Python flushes standard output once more at exit; let that go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if not told_operator(exc):
            raise
        return 1


INTERRUPTED = 128 + 2  # the shell's status for a command ended by SIGINT

LISTEN_ERRNOS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL)


def told_operator(exc: BaseException) -> bool:
    """Say `exc` in one line when it is the operator's to fix and its message says all of
    it: a database that cannot be reached or is not migrated, a demo already running on
    the data directory, an address the server cannot listen on, a file it names that
    cannot be read or written (`--out` in a missing folder, say). False (nothing said) for
    anything else. (Imported here: commands without a database never load asyncpg.)"""
    from gateway.db import DatabaseUnreachable
    from gateway.db.migrate import MigrationError
    from gateway.demo.run import DemoAlreadyRunning

    if not (isinstance(exc, (DatabaseUnreachable, MigrationError, DemoAlreadyRunning))
            or isinstance(exc, OSError) and (exc.errno in LISTEN_ERRNOS or exc.filename is not None)):
        return False
    print(f"mallpay: {exc}", file=sys.stderr)
    return True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mallpay", description="Mall Pay payment gateway")
    sub = parser.add_subparsers(metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway (migrates first)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=_port)
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations at start")
    serve.add_argument("--workers", type=_positive_int, help="gateway processes sharing the port (default MALLPAY_SERVE_WORKERS)")
    serve.set_defaults(run=_serve)

    emulator = sub.add_parser("emulator", help="run the WeChat Pay emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=_port)
    emulator.set_defaults(run=_emulator)

    demo = sub.add_parser("demo", help="a demo mall: database, gateway, emulator, shoppers, summary")
    demo.add_argument("--shoppers", type=_positive_int, default=16, help="concurrent simulated shoppers")
    demo.add_argument("--seconds", type=_positive_seconds, default=20.0, help="how long the shoppers shop")
    demo.add_argument("--stores", type=_positive_int, default=24)
    demo.set_defaults(run=_demo)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(run=_migrate)

    client = sub.add_parser("client", help="API clients").add_subparsers(metavar="ACTION")
    create = client.add_parser("create", help="make API credentials and write DIR/config.json")
    create.add_argument("--role", required=True, choices=["mall_app", "tenant", "finance", "admin"])
    create.add_argument("--sub-mchid")
    create.add_argument("--name")
    create.add_argument("--verification", help="how the client verifies the gateway's signatures: public_key "
                        "(default; PUB_KEY_ID + the gateway's public key) or certificate (platform certificate "
                        "mode: the SDK downloads /v3/certificates)")
    create.add_argument("--out", required=True, type=Path)
    create.set_defaults(run=_client_create)

    tenant = sub.add_parser("tenant", help="stores").add_subparsers(metavar="ACTION")
    t_create = tenant.add_parser("create", help="onboard a store with its contract")
    t_create.add_argument("--sub-mchid", required=True)
    t_create.add_argument("--name", required=True)
    t_create.add_argument("--floor", default="")
    t_create.add_argument("--category", default="")
    t_create.add_argument("--sub-appid")
    for name in ("commission-bps", "max-ratio-bps", "fee-rate-bps", "freeze-days", "guide-reward-bps"):
        t_create.add_argument(f"--{name}", type=int)
    t_create.add_argument("--no-auto-split", action="store_true")
    t_create.add_argument("--approved-by", help="with --max-ratio-bps above 3000: who approved it")
    t_create.add_argument("--approval-reason", help="with --max-ratio-bps above 3000: why")
    t_create.set_defaults(run=_tenant_create)
    t_approve = tenant.add_parser("approve", help="record a high-ratio approval and raise the store's cap")
    t_approve.add_argument("--sub-mchid", required=True)
    t_approve.add_argument("--max-ratio-bps", type=int, required=True)
    t_approve.add_argument("--approved-by", required=True)
    t_approve.add_argument("--reason", required=True)
    t_approve.set_defaults(run=_tenant_approve)

    guide = sub.add_parser("guide", help="shopping guides").add_subparsers(metavar="ACTION")
    g_create = guide.add_parser("create", help="register a store's shopping guide (a split receiver)")
    g_create.add_argument("--guide-id", required=True)
    g_create.add_argument("--sub-mchid", required=True)
    g_create.add_argument("--openid", required=True)
    g_create.add_argument("--name", required=True)
    g_create.set_defaults(run=_guide_create)
    coupons = sub.add_parser("coupons", help="coupon campaigns").add_subparsers(metavar="ACTION")
    c_report = coupons.add_parser("report", help="attribution and uplift per campaign and overall")
    c_report.add_argument("--window-days", help="visits counted this many days after a decision")
    c_report.add_argument("--json", action="store_true", help="the report as JSON")
    c_report.set_defaults(run=_coupons_report)
    points = sub.add_parser("points", help="mall points").add_subparsers(metavar="ACTION")
    p_rule = points.add_parser("rule", help="set a store's points per paid yuan (show it without --points-per-yuan)")
    p_rule.add_argument("--sub-mchid", required=True)
    p_rule.add_argument("--points-per-yuan", type=int)
    p_rule.set_defaults(run=_points_rule)
    from gateway import cli_coupons
    cli_coupons.add_coupon_commands(coupons)
    cli_coupons.add_points_commands(points)
    t_list = tenant.add_parser("list", help="list the mall's stores")
    t_list.set_defaults(run=_tenant_list)
    targeting_files.add_commands(sub)

    reconcile = sub.add_parser("reconcile", help="reconcile a China-time day against the channel's bills "
                                                 "(books its payouts); 'show' prints the day's report")
    reconcile.add_argument("action", nargs="?", choices=["show"], help="show the report instead of running")
    reconcile.add_argument("--date", required=True, type=_day, help="the day, yyyy-MM-DD")
    reconcile.set_defaults(run=_reconcile)
    from gateway import cli_finance
    cli_finance.add_commands(sub)
    add_jobs_commands(sub)
    return parser


def _day(text: str) -> date:
    day = iso_day(text)
    if day is None:
        raise argparse.ArgumentTypeError(f"a day yyyy-MM-DD from {DAY_MIN} to {DAY_MAX}")
    return day


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds above 0")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= PORT_MAX:
        raise argparse.ArgumentTypeError(f"must be from 1 to {PORT_MAX}")
    return value


def _with_database(settings: Settings):
    """The database URL (starting the embedded server when DATABASE_URL is unset)."""
    from gateway.db import resolve_database_url
    url, server = resolve_database_url(settings)
    return url, server


def _serve(settings: Settings, args) -> int:
    from gateway.db.migrate import MigrationError, migrate, pending
    from gateway.logging import configure_logging
    from gateway.serve import serve

    settings = settings.with_(host=args.host or settings.host, port=args.port or settings.port,
                              serve_workers=args.workers or settings.serve_workers)
    configure_logging(settings.log_level)
    url, _server = _with_database(settings)
    if settings.migrate_on_start and not args.no_migrate:
        asyncio.run(migrate(url))
    elif missing := asyncio.run(pending(url)):
        raise MigrationError(f"the database lacks {', '.join(missing)}: run `mallpay migrate` first")
    return serve(settings, url, settings.serve_workers)


def _emulator(settings: Settings, args) -> int:
    from gateway.channel.credentials import ensure_local_credentials
    from emulator import emulator_config_from_env, run_emulator
    from gateway.logging import configure_logging

    configure_logging(settings.log_level)
    _, credentials = ensure_local_credentials(settings.data_dir, settings.sp_mchid)
    _use_uvloop()
    run_emulator(args.host, args.port or settings.emulator_port, emulator_config_from_env(credentials))
    return 0


def _demo(settings: Settings, args) -> int:
    from gateway.demo import run_demo
    return asyncio.run(run_demo(settings, shoppers=args.shoppers, seconds=args.seconds, stores=args.stores))


def _migrate(settings: Settings, args) -> int:
    from gateway.db.migrate import migrate
    url, _ = _with_database(settings)
    applied = asyncio.run(migrate(url))
    print("applied: " + (", ".join(applied) if applied else "nothing, the schema is current"))
    return 0


def _client_create(settings: Settings, args) -> int:
    from gateway.api.requests.mall import parse_new_client
    from gateway.app import database_services
    from gateway.identity import load_or_create_identity
    from gateway.services import onboarding

    key = signing.generate_private_key()
    identity = load_or_create_identity(settings.gateway_private_key_file, settings.data_dir)

    async def register():
        client = parse_new_client({"role": args.role, "sub_mchid": args.sub_mchid, "name": args.name,
                                   "public_key": signing.public_key_pem(key.public_key()).decode(),
                                   "verification": args.verification})
        async with _pool(settings) as pool:
            await onboarding.ensure_mall(pool, settings.sp_mchid, settings.sp_appid, settings.mall_name)
            return await onboarding.create_client(database_services(settings, pool), settings.sp_mchid, client)

    _writable_folder(args.out)  # before registering: a client whose key is lost helps no one
    created = _run_refusable(register())
    if created is None:
        return 1
    write_client_config(args.out, settings, created, key, identity)
    print(f"client {created.client_id} ({args.role}) written to {args.out / 'config.json'}")
    return 0


def _writable_folder(out: Path) -> None:
    """Make `out` (and its parents) and check files can be made in it; an OSError naming
    it otherwise."""
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "cannot write files in this folder", str(out))


def write_client_config(out: Path, settings: Settings, created, key, identity) -> None:
    """DIR/config.json as SPEC 8 names it, next to the client's key and the gateway's."""
    out.mkdir(parents=True, exist_ok=True)
    key_path = out / "apiclient_key.pem"
    key_path.touch(mode=0o600)
    key_path.write_bytes(signing.private_key_pem(key))
    (out / "gateway_public_key.pem").write_bytes(identity.public_key_pem)
    (out / "gateway_certificate.pem").write_bytes(identity.certificate_pem)
    config = {
        "base_url": settings.public_url, "mchid": created.client_id, "appid": settings.sp_appid,
        "sp_mchid": settings.sp_mchid, "merchant_serial_no": created.serial_no,
        "merchant_private_key": key_path.name, "apiv3_key": created.apiv3_key.reveal().decode(),
        "public_key_id": identity.public_key_id, "public_key": "gateway_public_key.pem",
        # The same key under its other name, for SDKs in platform certificate mode (which
        # can also download it from /v3/certificates).
        "verification": created.verification, "certificate_serial": identity.certificate_serial,
        "certificate": "gateway_certificate.pem",
    }
    config_path = out / "config.json"
    config_path.touch(mode=0o600)
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def _tenant_create(settings: Settings, args) -> int:
    from gateway.api.requests.mall import parse_approval, parse_tenant
    from gateway.app import database_services
    from gateway.repo import tenants as tenants_repo
    from gateway.services import onboarding, receivers

    contract = {name: getattr(args, name) for name in
                ("commission_bps", "max_ratio_bps", "fee_rate_bps", "freeze_days", "guide_reward_bps")
                if getattr(args, name) is not None}
    high_ratio = contract.get("max_ratio_bps", 0) > onboarding.DEFAULT_MAX_RATIO_BPS
    if high_ratio:
        if not (args.approved_by and args.approval_reason):
            print("mallpay: a cap above 3000 bps needs --approved-by and --approval-reason", file=sys.stderr)
            return 2
        approved_ratio = contract.pop("max_ratio_bps")
    if args.no_auto_split:
        contract["auto_split"] = False
    fields = {"sub_mchid": args.sub_mchid, "name": args.name, "floor": args.floor,
              "category": args.category, "contract": contract}
    if args.sub_appid:
        fields["sub_appid"] = args.sub_appid

    async def create():
        tenant = parse_tenant(settings.sp_mchid, fields)
        approval = parse_approval({"approved_by": args.approved_by, "reason": args.approval_reason,
                                   "max_ratio_bps": approved_ratio}) if high_ratio else None
        async with _pool(settings) as pool:
            svc = database_services(settings, pool)
            await onboarding.ensure_mall(pool, settings.sp_mchid, settings.sp_appid, settings.mall_name)
            tenant = await onboarding.create_tenant(svc, tenant)
            if approval:
                await receivers.approve_high_ratio(svc, settings.sp_mchid, args.sub_mchid, approval)
                async with pool.acquire() as conn:
                    tenant = await tenants_repo.tenant(conn, settings.sp_mchid, args.sub_mchid)
            return tenant.as_json()

    return _print_json_of(create())


def _tenant_approve(settings: Settings, args) -> int:
    from gateway.api.requests.mall import parse_approval
    from gateway.app import database_services
    from gateway.services import receivers

    async def approve():
        approval = parse_approval({"approved_by": args.approved_by, "reason": args.reason,
                                   "max_ratio_bps": args.max_ratio_bps})
        async with _pool(settings) as pool:
            return await receivers.approve_high_ratio(database_services(settings, pool), settings.sp_mchid,
                                                      args.sub_mchid, approval)

    return _print_json_of(approve())


def _points_rule(settings: Settings, args) -> int:
    from gateway.api.requests.mall import parse_points_rule
    from gateway.app import database_services
    from gateway.services import onboarding

    async def rule():
        points_per_yuan = None
        if args.points_per_yuan is not None:
            points_per_yuan = parse_points_rule({"points_per_yuan": args.points_per_yuan})
        async with _pool(settings) as pool:
            svc = database_services(settings, pool)
            if points_per_yuan is None:
                return await onboarding.points_rule(svc, settings.sp_mchid, args.sub_mchid)
            return await onboarding.set_points_rule(svc, settings.sp_mchid, args.sub_mchid, points_per_yuan)

    return _print_json_of(rule())


def _guide_create(settings: Settings, args) -> int:
    from gateway.api.requests.mall import parse_guide
    from gateway.app import one_shot_services
    from gateway.services import receivers

    async def create():
        guide = parse_guide({"guide_id": args.guide_id, "sub_mchid": args.sub_mchid, "openid": args.openid,
                             "name": args.name})
        url, _ = _with_database(settings)
        from gateway.db.migrate import migrate
        await migrate(url)
        async with one_shot_services(settings, url) as svc:
            return await receivers.register_guide(svc, settings.sp_mchid, guide)

    guide = _run_refusable(create())
    if guide is None:
        return 1
    print(f"guide {guide['guide_id']} of store {guide['sub_mchid']} registered")
    return 0


def _tenant_list(settings: Settings, args) -> int:
    from gateway.repo import tenants as tenants_repo

    async def listing():
        async with _pool(settings) as pool:
            async with pool.acquire() as conn:
                return await tenants_repo.tenants(conn, settings.sp_mchid, 1000, 0)

    found, total = asyncio.run(listing())
    for tenant in found:
        print(f"{tenant.sub_mchid}\t{tenant.floor}\t{tenant.category}\t{tenant.name}")
    print(f"{total} stores", file=sys.stderr)
    return 0


def _reconcile(settings: Settings, args) -> int:
    from gateway.app import one_shot_services
    from gateway.channel import BillNotReady
    from gateway.domain_errors import ChannelUnavailable
    from gateway.repo import bills as bills_repo
    from gateway.services import reconciliation

    async def run():
        url, _ = _with_database(settings)
        from gateway.db.migrate import migrate
        await migrate(url)
        async with one_shot_services(settings, url) as svc:
            if args.action != "show":
                try:
                    await reconciliation.reconcile_day(svc, settings.sp_mchid, args.date)
                except BillNotReady:
                    raise ChannelUnavailable("bill_not_ready", "the channel's bills of that day are not ready "
                                             "yet (from 10:00 China time the next day)") from None
            async with svc.pool.acquire() as conn:
                report = await bills_repo.report(conn, settings.sp_mchid, args.date)
                items = await bills_repo.items(conn, settings.sp_mchid, args.date, 10_000, 0)
        return report, items

    done = _run_refusable(run())
    if done is None:
        return 1
    report, items = done
    if report is None:
        print(f"mallpay: no reconciliation of {args.date} yet (run: mallpay reconcile --date {args.date})",
              file=sys.stderr)
        return 1
    print(json.dumps(reconciliation.report_json(report, items), ensure_ascii=False, indent=2))
    return 0 if not [i for i in items if i["healed_at"] is None] else 3


@contextlib.asynccontextmanager
async def _pool(settings: Settings):
    """A small pool on the gateway's database (migrated first), closed when the command ends."""
    from gateway.db import create_pool
    from gateway.db.migrate import migrate
    url, _ = _with_database(settings)
    await migrate(url)
    pool = await create_pool(url, min_size=1, max_size=2, statement_timeout_ms=settings.db_statement_timeout_ms)
    try:
        yield pool
    finally:
        await pool.close()


def _run_refusable(coro):
    """Run a command; an expected refusal prints its code and reason instead of a trace."""
    from gateway.api.middleware import REFUSALS, wechat_answer
    from gateway.channel import ChannelError
    try:
        return asyncio.run(coro)
    except REFUSALS as refusal:
        answer = wechat_answer(refusal)
        print(f"mallpay: {answer.code} {answer.reason}: {answer.message}", file=sys.stderr)
        return None
    except (ChannelError, OSError) as exc:
        print(f"mallpay: the payment channel could not be reached ({type(exc).__name__}); "
              "is it running (mallpay emulator)?", file=sys.stderr)
        return None


def _print_json_of(coro) -> int:
    """Run a command and print what it made as JSON (exit 0), or its refusal (exit 1)."""
    made = _run_refusable(coro)
    if made is None:
        return 1
    print(json.dumps(made, ensure_ascii=False, indent=2))
    return 0


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # optional speed-up; the asyncio loop serves correctly
        return
    uvloop.install()



def _coupons_report(settings: Settings, args) -> int:
    from gateway.api.requests.mall import parse_window_days
    from gateway.cli_jobs import _run
    from gateway.services import coupon_reports

    result = _run(settings, lambda svc: coupon_reports.mall_report(
        svc, settings.sp_mchid, parse_window_days(args.window_days, settings.coupon_report_window_days)))
    if result is None:
        return 1
    window_days = result["window_days"]
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    print(f"visits within {window_days} days of each decision; intervals are 95%")
    for c in result["campaigns"]:
        print(f"campaign {c['campaign_id']} {c['name']} (store {c['sub_mchid']}): issued {c['issued']}, "
              f"redeemed {c['redeemed']}, discount {_yuan(c['discount_spent'])}, sales {_yuan(c['sales_driven'])}")
        print("  " + _uplift_line(c["uplift"]))
        for f in c["flows"]:
            print(f"  {f['trigger_sub_mchid']} -> {f['redeeming_sub_mchid']}: {f['redeemed']} redeemed, "
                  f"sales {_yuan(f['sales'])}")
    print("overall: " + _uplift_line(result["overall"]["uplift"]))
    return 0


def _uplift_line(u: dict) -> str:
    t, h = u["treated"], u["held_out"]
    line = (f"treated {t['visits']}/{t['decisions']} visited, held out {h['visits']}/{h['decisions']}")
    visits, sales = u["incremental_visits"], u["incremental_sales"]
    if visits is None:
        return line + "; too few decisions for an estimate"
    cost = u["cost_per_incremental_visit"]
    return (line + f"; incremental visits {visits['estimate']} [{visits['low']}, {visits['high']}], "
            f"incremental sales {_yuan(sales['estimate'])} [{_yuan(sales['low'])}, {_yuan(sales['high'])}], "
            f"cost per incremental visit {'n/a' if cost is None else _yuan(cost)}")


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{abs(fen) // 100}.{abs(fen) % 100:02d}"


if __name__ == "__main__":
    sys.exit(main())
