"""Mall extensions under /v3/mall, one module per resource; `routes` holds them all."""

from __future__ import annotations

from gateway.api.mall import (
    clients, coupon_campaigns, coupon_subsidies, guides, jobs, ledger, members, notifications, payouts,
    points_syncs, reconciliations, statements, tenants,
)

RESOURCES = (tenants, guides, clients, ledger, notifications, payouts, reconciliations, statements, jobs,
             coupon_campaigns, members, coupon_subsidies, points_syncs)
routes = [route for module in RESOURCES for route in module.routes]
