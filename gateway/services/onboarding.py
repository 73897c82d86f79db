"""Setting a mall up: the mall itself, its stores with their contracts, API clients."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from gateway import signing
from gateway.caller import VERIFICATION_MODES, Caller
from gateway.domain_errors import NotFound, Refused
from gateway.repo import clients as clients_repo
from gateway.repo import tenants as tenants_repo
from gateway.repo.tenants import Tenant
from ledger import accounts
from ledger import repo as ledger_repo
from points import repo as points_repo
from splitting import rules
from splitting.rules import DEFAULT_MAX_RATIO_BPS

ROLES = ("mall_app", "tenant", "finance", "admin")
NAME_CHARS_MAX = 64
# A cap above DEFAULT_MAX_RATIO_BPS comes only with an approval record (POST .../approvals).
CONTRACT_LIMITS = {
    "commission_bps": (0, rules.BPS_DENOMINATOR), "max_ratio_bps": (0, DEFAULT_MAX_RATIO_BPS),
    "fee_rate_bps": (0, rules.FEE_RATE_BPS_MAX), "freeze_days": (rules.FREEZE_DAYS_MIN, rules.FREEZE_DAYS_MAX),
    "guide_reward_bps": (0, rules.BPS_DENOMINATOR),
}
CONTRACT_DEFAULTS = {
    "commission_bps": 0, "max_ratio_bps": DEFAULT_MAX_RATIO_BPS, "fee_rate_bps": 60,
    "freeze_days": 30, "guide_reward_bps": 0, "auto_split": True,
}


def contract_of(**terms) -> rules.Contract:
    """The default contract with `terms` (names of CONTRACT_DEFAULTS) instead."""
    return rules.Contract(**{**CONTRACT_DEFAULTS, **terms})


async def ensure_mall(pool, mall_id: str, sp_appid: str, name: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await tenants_repo.ensure_mall(conn, mall_id, sp_appid, name)
        await ledger_repo.ensure_accounts(conn, mall_id, accounts.mall_accounts())


async def create_tenant(svc, tenant: Tenant) -> Tenant:
    """Onboard a store (checked at the edge: `gateway.api.requests.mall.parse_tenant`) and
    open its ledger accounts, in one transaction."""
    async with svc.pool.acquire() as conn, conn.transaction():
        created = await tenants_repo.insert_tenant(conn, tenant)
        if created is None:
            raise Refused("tenant_exists", "this sub_mchid is already onboarded")
        await ledger_repo.ensure_accounts(conn, tenant.mall_id, accounts.tenant_accounts(tenant.sub_mchid))
    return created


async def tenants_page(svc, caller: Caller, limit: int, offset: int) -> dict:
    """A page of the mall's stores; a store's own client sees a list of itself."""
    async with svc.pool.acquire() as conn:
        if caller.role == "tenant":
            own = await tenants_repo.tenant(conn, caller.mall_id, caller.sub_mchid)
            found = [own][offset:offset + limit] if own else []
            total = 1 if own else 0
        else:
            found, total = await tenants_repo.tenants(conn, caller.mall_id, limit, offset)
    return {"total_count": total, "offset": offset, "limit": limit, "data": [t.as_json() for t in found]}


async def visible_tenant(svc, caller: Caller, sub_mchid: str) -> dict | None:
    """One store, None when unknown or not the caller's to see."""
    async with svc.pool.acquire() as conn:
        tenant = await tenants_repo.tenant(conn, caller.mall_id, sub_mchid)
    if tenant is None or not caller.sees_store(tenant.sub_mchid):
        return None
    return tenant.as_json()


@dataclass(frozen=True, slots=True)
class ContractChange:
    terms: dict  # the contract terms to change, each known and in range (checked at the edge)
    asks_cap: bool  # the request named max_ratio_bps, which changes only with an approval record
    asked_max_ratio_bps: object = None  # as the request gave it


async def change_contract(svc, mall_id: str, sub_mchid: str, change: ContractChange) -> Tenant:
    """New terms for a store. Orders already paid keep the cap and fee they were paid
    under; commission and guide rewards not split yet follow the new terms. The cap
    itself changes only through an approval record (POST .../approvals)."""
    async with svc.pool.acquire() as conn, conn.transaction():
        tenant = await tenants_repo.tenant_for_update(conn, mall_id, sub_mchid)
        if tenant is None:
            raise NotFound("tenant")
        if change.asks_cap:
            raise Refused("approval_required", "the cap changes only with an approval record",
                          asked=change.asked_max_ratio_bps, allowed=tenant.contract.max_ratio_bps)
        terms = replace(tenant.contract, **change.terms)
        rules.check_automatic_within_cap(terms.commission_bps, terms.guide_reward_bps, terms.max_ratio_bps)
        return await tenants_repo.update_contract(conn, mall_id, sub_mchid, terms)


async def points_rule(svc, mall_id: str, sub_mchid: str) -> dict:
    """The points a store's payments earn per yuan: its own rule, or the mall's default."""
    async with svc.pool.acquire() as conn:
        if await tenants_repo.tenant(conn, mall_id, sub_mchid) is None:
            raise NotFound("tenant")
        row = await points_repo.rule_row(conn, mall_id, sub_mchid)
    return _points_rule_json(svc, sub_mchid, row)


async def set_points_rule(svc, mall_id: str, sub_mchid: str, points_per_yuan: int) -> dict:
    """Set a store's points per paid yuan (checked at the edge). Orders already paid keep
    the rate they earned by (refunds reverse at that rate); the next payment earns by the new one."""
    async with svc.pool.acquire() as conn, conn.transaction():
        if await tenants_repo.tenant_for_update(conn, mall_id, sub_mchid) is None:
            raise NotFound("tenant")
        await points_repo.set_rule(conn, mall_id, sub_mchid, points_per_yuan, svc.clock())
        row = await points_repo.rule_row(conn, mall_id, sub_mchid)
    return _points_rule_json(svc, sub_mchid, row)


def _points_rule_json(svc, sub_mchid: str, row) -> dict:
    if row is None:
        return {"sub_mchid": sub_mchid, "points_per_yuan": svc.settings.points_per_yuan_default,
                "source": "mall_default", "updated_at": None}
    return {"sub_mchid": sub_mchid, "points_per_yuan": row["points_per_yuan"], "source": "store_rule",
            "updated_at": row["updated_at"].isoformat()}


@dataclass(frozen=True)
class NewClient:
    client_id: str
    serial_no: str
    apiv3_key: signing.Secret
    verification: str


def serial_of(public_key) -> str:
    """A key's serial number: 40 hex digits, like a WeChat Pay merchant certificate's."""
    return signing.key_fingerprint(public_key)[:40]


@dataclass(frozen=True, slots=True)
class ClientKey:
    public_key_pem: str  # an RSA public key of at least 2048 bits (checked at the edge)
    serial_no: str  # `serial_of` the key


@dataclass(frozen=True, slots=True)
class NewClientRequest:
    role: str  # one of ROLES
    sub_mchid: str | None  # a `tenant`'s store; None for every other role
    name: str
    key: ClientKey
    verification: str = "public_key"  # one of VERIFICATION_MODES


async def create_client(svc, mall_id: str, request: NewClientRequest) -> NewClient:
    """Register a client with its first key. A mall's first `mall_app` client signs as
    the mall's own sp_mchid, so a WeChat Pay SDK configured for the mall works as is."""
    assert request.role in ROLES, "the role is checked at the edge"
    assert request.verification in VERIFICATION_MODES, "the mode is checked at the edge"
    apiv3_key = secrets.token_hex(16).encode()  # 32 ASCII characters, like WeChat's APIv3 keys
    async with svc.pool.acquire() as conn, conn.transaction():
        if request.sub_mchid is not None and await tenants_repo.tenant(conn, mall_id, request.sub_mchid) is None:
            raise NotFound("tenant", message="no such store in this mall")
        client_id = mall_id
        if request.role != "mall_app" or await clients_repo.client_exists(conn, client_id):
            client_id = await _fresh_client_id(conn)
        await clients_repo.insert_client(conn, client_id=client_id, mall_id=mall_id, role=request.role,
                                         sub_mchid=request.sub_mchid, name=request.name, apiv3_key=apiv3_key,
                                         verification=request.verification)
        await clients_repo.insert_client_key(conn, client_id, request.key.serial_no, request.key.public_key_pem)
    return NewClient(client_id=client_id, serial_no=request.key.serial_no, apiv3_key=signing.Secret(apiv3_key),
                     verification=request.verification)


async def add_client_key(svc, mall_id: str, client_id: str, key: ClientKey) -> str:
    """Another key for a client of this mall (rotation); a mall never touches another's."""
    async with svc.pool.acquire() as conn, conn.transaction():
        if not await clients_repo.client_of_mall(conn, client_id, mall_id):
            raise NotFound("client")
        if await clients_repo.client_key_exists(conn, client_id, key.serial_no):
            raise Refused("key_exists", "this key was already added to the client (a revoked key stays revoked)")
        await clients_repo.insert_client_key(conn, client_id, key.serial_no, key.public_key_pem)
    return key.serial_no


async def revoke_client_key(svc, mall_id: str, client_id: str, serial_no: str) -> bool:
    """False when this mall's client has no such key in use."""
    async with svc.pool.acquire() as conn:
        return await clients_repo.revoke_client_key(conn, mall_id, client_id, serial_no, svc.clock())


async def _fresh_client_id(conn) -> str:
    for _ in range(16):
        candidate = "16" + "".join(str(secrets.randbelow(10)) for _ in range(8))
        if not await clients_repo.client_exists(conn, candidate):
            return candidate
    raise AssertionError("no free client id after 16 draws")
