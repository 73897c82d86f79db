"""Client keys are managed by a mall's admin for that mall's clients only; adding a key
twice is a client's retry, not a server fault (SPEC 1: each client sees and changes only
what its role and scope allow)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway import signing
from gateway.services import onboarding
from tests.support import SignedClient, register_client
from tests.support import test_key as shared_key

OTHER_MALL, OTHER_STORE = "1900000500", "1900000501"


async def other_malls_app(mall) -> SignedClient:
    """The mini-program client of a second mall kept in the same database."""
    await onboarding.ensure_mall(mall.pool, OTHER_MALL, "wxothermall000001", "Other mall")
    creds = await register_client(mall.pool, mall_id=OTHER_MALL, role="mall_app", name="other app",
                                  private_key=shared_key(0))
    return SignedClient(mall.gateway_url, creds, mall.gateway_public_key, mall.session)


def other_query(out_trade_no: str = "ANY-000001") -> str:
    return f"/v3/pay/partner/transactions/out-trade-no/{out_trade_no}?sp_mchid={OTHER_MALL}&sub_mchid={OTHER_STORE}"


async def test_an_admin_cannot_add_a_key_to_another_malls_client(mall):
    victim = await other_malls_app(mall)
    attacker_key = shared_key(1)
    reply = await mall.admin.post(f"/v3/mall/clients/{victim.creds.mchid}/keys",
                                  {"public_key": signing.public_key_pem(attacker_key.public_key()).decode()})
    attacker_creds = replace(victim.creds, serial_no=onboarding.serial_of(attacker_key.public_key()),
                             private_key=attacker_key)
    forged = SignedClient(mall.gateway_url, attacker_creds, mall.gateway_public_key, mall.session)
    signed_as_victim = await forged.get(other_query())
    assert signed_as_victim.status == 401, "the attacker signs as the other mall's client"
    assert reply.status in (403, 404), reply.json
    assert reply.json["code"] in ("NO_AUTH", "RESOURCE_NOT_EXISTS")


async def test_an_admin_cannot_revoke_another_malls_key(mall):
    victim = await other_malls_app(mall)
    reply = await mall.admin.request("DELETE", f"/v3/mall/clients/{victim.creds.mchid}/keys/{victim.creds.serial_no}")
    still_works = await victim.get(other_query())
    assert still_works.status == 404 and still_works.json["code"] == "ORDER_NOT_EXIST", still_works.json
    assert reply.status in (403, 404), reply.body
    assert reply.json["code"] in ("NO_AUTH", "RESOURCE_NOT_EXISTS")


async def test_adding_a_key_twice_is_not_a_server_error(mall):
    own = mall.app.creds
    pem = signing.public_key_pem(own.private_key.public_key()).decode()  # the key it already has
    reply = await mall.admin.post(f"/v3/mall/clients/{own.mchid}/keys", {"public_key": pem})
    assert reply.status != 500, reply.json
    if reply.status == 200:
        assert reply.json["serial_no"] == own.serial_no
    else:
        assert (reply.status, reply.json["code"]) == (400, "INVALID_REQUEST"), reply.json
    assert (await mall.app.get("/v3/mall/tenants")).status == 200, "the key still signs"


async def test_an_admin_manages_its_own_clients_keys(mall):
    """Control for the tests above: within its own mall the admin adds and revokes."""
    own = mall.app.creds
    new_key = shared_key(1)
    added = await mall.admin.post(f"/v3/mall/clients/{own.mchid}/keys",
                                  {"public_key": signing.public_key_pem(new_key.public_key()).decode()})
    assert added.status == 200, added.json
    revoked = await mall.admin.request("DELETE", f"/v3/mall/clients/{own.mchid}/keys/{added.json['serial_no']}")
    assert revoked.status == 204
    for bad in ({}, {"public_key": "not a pem"}, {"public_key": 7}):
        reply = await mall.admin.post(f"/v3/mall/clients/{own.mchid}/keys", bad)
        assert (reply.status, reply.json["code"], reply.json["detail"]["field"]) == (400, "PARAM_ERROR", "public_key")
    reply = await mall.app.post(f"/v3/mall/clients/{own.mchid}/keys",
                                {"public_key": signing.public_key_pem(new_key.public_key()).decode()})
    assert (reply.status, reply.json["code"]) == (403, "NO_AUTH"), "only admins manage keys"
