"""`mallpay jobs list|show|retry|resolve`: the scheduler's work that gave up, for operators."""

from __future__ import annotations

import asyncio
import json
import sys


def listing_command(commands, name: str, text: str, run):
    """A command that prints a page of rows (`print_page`): --limit and --json."""
    command = commands.add_parser(name, help=text)
    command.add_argument("--limit", type=int, default=100)
    command.add_argument("--json", action="store_true", help="the list as JSON")
    command.set_defaults(run=run)
    return command


def add_jobs_commands(sub) -> None:
    jobs = sub.add_parser("jobs", help="scheduler jobs that gave up").add_subparsers(metavar="ACTION")
    j_list = listing_command(jobs, "list", "list jobs in one state (default: dead) with their last error", _list)
    j_list.add_argument("--state", default="dead", help="dead, pending, done or resolved")
    j_show = jobs.add_parser("show", help="one job and what operators did with it")
    j_show.add_argument("job_id", type=int)
    j_show.set_defaults(run=_show)
    for action, text in (("retry", "start a dead job over"), ("resolve", "mark a dead job settled by hand")):
        act = jobs.add_parser(action, help=text)
        act.add_argument("job_id", type=int)
        act.add_argument("--by", required=True, help="who decides (kept in the record)")
        act.add_argument("--reason", required=True, help="why (kept in the record)")
        act.set_defaults(run=_act, action=action)


def _list(settings, args) -> int:
    from gateway.api.requests.mall import parse_job_state
    from gateway.services import stuck_jobs
    return print_page(settings, lambda svc: stuck_jobs.list_jobs(svc, settings.sp_mchid, parse_job_state(args.state),
                                                                 args.limit, 0),
                      ("job_id", "kind", "ref", "state", "attempts", "last_error"), f"{args.state} jobs",
                      as_json=args.json)


def _show(settings, args) -> int:
    from gateway.services import stuck_jobs
    job = _run(settings, lambda svc: stuck_jobs.job_with_actions(svc, settings.sp_mchid, args.job_id))
    if job is None:
        return 1
    print(json.dumps(job, ensure_ascii=False, indent=2))
    return 0


def _act(settings, args) -> int:
    from gateway.api.requests.mall import parse_acted_by, parse_job_reason
    from gateway.services import stuck_jobs
    job = _run(settings, lambda svc: stuck_jobs.act(svc, settings.sp_mchid, args.job_id, args.action,
                                                    parse_acted_by(args.by), parse_job_reason({"reason": args.reason})))
    if job is None:
        return 1
    print(json.dumps(job, ensure_ascii=False, indent=2))
    return 0


def _run(settings, use):
    """Run `use(svc)` against the database (migrated first); refusals print their code."""
    from gateway.api.middleware import REFUSALS, wechat_answer
    from gateway.app import database_services
    from gateway.cli import _pool

    async def run():
        async with _pool(settings) as pool:
            return await use(database_services(settings, pool))

    try:
        return asyncio.run(run())
    except REFUSALS as refusal:
        answer = wechat_answer(refusal)
        print(f"mallpay: {answer.code} {answer.reason}: {answer.message}", file=sys.stderr)
        return None


def print_page(settings, use, columns: tuple[str, ...], what: str, *, as_json: bool = False) -> int:
    """Run a listing (`use(svc)` answers a page: `data` and `total_count`) and print it: one
    tab-separated line per row with `columns`, the count on stderr; or the page as JSON."""
    found = _run(settings, use)
    if found is None:
        return 1
    if as_json:
        print(json.dumps(found, ensure_ascii=False, indent=2))
        return 0
    for row in found["data"]:
        print("\t".join(str(row[column]) for column in columns))
    print(f"{found['total_count']} {what}", file=sys.stderr)
    return 0
