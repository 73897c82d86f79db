"""Mall extensions under /v3/mall, one module per resource; `routes` holds them all."""

from __future__ import annotations

from gateway.api.mall import clients, guides, ledger, notifications, tenants

RESOURCES = (tenants, guides, clients, ledger, notifications)
routes = [route for module in RESOURCES for route in module.routes]
