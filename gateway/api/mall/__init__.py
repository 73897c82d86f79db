"""Mall extensions under /v3/mall, one module per resource; `routes` holds them all."""

from __future__ import annotations

from gateway.api.mall import (
    clients, guides, jobs, ledger, notifications, payouts, reconciliations, statements, tenants,
)

RESOURCES = (tenants, guides, clients, ledger, notifications, payouts, reconciliations, statements, jobs)
routes = [route for module in RESOURCES for route in module.routes]
