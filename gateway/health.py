"""What `/health/ready` checks: an extensible list of named checks.

A check is an async function of the app returning a `CheckResult`. Checks marked
`required` decide readiness (the database answers, every background loop runs); others
only report (a count of dead jobs, say). Add one with `app[HEALTH].add(name, check)`
from the composition root; each runs under `health_check_timeout_ms`, and one that
raises or times out counts as failed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from aiohttp import web

ERROR_CHARS_MAX = 200


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: dict = field(default_factory=dict)


Check = Callable[[web.Application], Awaitable[CheckResult]]


@dataclass(frozen=True)
class NamedCheck:
    name: str
    check: Check
    required: bool


@dataclass
class HealthChecks:
    timeout_s: float
    checks: list[NamedCheck] = field(default_factory=list)

    def add(self, name: str, check: Check, *, required: bool = True) -> None:
        assert all(c.name != name for c in self.checks), f"two health checks named {name}"
        self.checks.append(NamedCheck(name, check, required))

    async def run(self, app: web.Application) -> tuple[bool, dict]:
        """(ready, body): ready when every required check passed."""
        results = await asyncio.gather(*(self._run_one(app, c) for c in self.checks))
        ready = all(result.ok for c, result in zip(self.checks, results) if c.required)
        body = {c.name: {"ok": result.ok, "required": c.required, **result.detail}
                for c, result in zip(self.checks, results)}
        return ready, body

    async def _run_one(self, app: web.Application, named: NamedCheck) -> CheckResult:
        try:
            return await asyncio.wait_for(named.check(app), self.timeout_s)
        except asyncio.TimeoutError:
            return CheckResult(False, {"error": "timeout"})
        except Exception as exc:  # noqa: BLE001 — a failing check is a result, not a crash
            return CheckResult(False, {"error": type(exc).__name__})


HEALTH = web.AppKey("health", HealthChecks)
