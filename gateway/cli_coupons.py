"""`mallpay coupons subsidy-payouts` and `mallpay points syncs|retry-sync`: what operators
look at for coupons' and points' money and messages."""

from __future__ import annotations

import json
import sys

from gateway.cli_jobs import listing_command


def add_coupon_commands(coupons) -> None:
    payouts = listing_command(coupons, "subsidy-payouts", "the mall's coupon-subsidy payouts to stores, newest first",
                              _subsidy_payouts)
    payouts.add_argument("--sub-mchid", help="one store's only")


def add_points_commands(points) -> None:
    syncs = listing_command(points, "syncs", "points changes told to WeChat in one state (default: dead)", _syncs)
    syncs.add_argument("--state", default="dead", help="dead (the default), pending or synced")
    retry = points.add_parser("retry-sync", help="send a dead points change to WeChat again")
    retry.add_argument("sync_id", type=int)
    retry.set_defaults(run=_retry_sync)


def _subsidy_payouts(settings, args) -> int:
    from gateway.api.requests.mall import parse_store_filter
    from gateway.cli_jobs import print_page
    from gateway.domain_errors import NotFound
    from gateway.repo.clients import Caller
    from gateway.services import coupon_redemption
    operator = Caller(client_id="cli", mall_id=settings.sp_mchid, sp_appid=settings.sp_appid, role="admin",
                      sub_mchid=None, apiv3_key=None)

    async def listing(svc):
        found = await coupon_redemption.subsidy_payouts(svc, operator, parse_store_filter(args.sub_mchid),
                                                        args.limit, 0)
        if found is None:
            raise NotFound("tenant")
        return found
    return print_page(settings, listing, ("paid_at", "sub_mchid", "out_payout_no", "amount"), "payouts",
                      as_json=args.json)


def _syncs(settings, args) -> int:
    from gateway.api.requests.mall import parse_sync_state
    from gateway.cli_jobs import print_page
    from gateway.services import points
    return print_page(settings, lambda svc: points.list_syncs(svc, settings.sp_mchid, parse_sync_state(args.state),
                                                              args.limit, 0),
                      ("sync_id", "kind", "ref", "increased_points", "state", "attempts", "last_error"),
                      f"{args.state} points syncs", as_json=args.json)


def _retry_sync(settings, args) -> int:
    from gateway.cli_jobs import _run
    from gateway.services import points
    found = _run(settings, lambda svc: points.retry_sync(svc, settings.sp_mchid, args.sync_id))
    if found is None:
        return 1
    sync, state = found
    if sync is None:
        print(f"mallpay: points sync {args.sync_id} " + ("not found" if state is None else
                                                        f"is {state}: points_sync_not_dead"), file=sys.stderr)
        return 1
    print(json.dumps(sync, ensure_ascii=False, indent=2))
    return 0
