"""The OpenAPI document is kept true (SPEC 2.3): every route the gateway serves is
documented with its method, every documented operation is served, the served document is
the one in the code, and it is a valid OpenAPI 3 document."""

from __future__ import annotations

import json
import re

import pytest

from gateway import invariants
from gateway.api.openapi import DOCUMENT
from gateway.app import create_app
from gateway.identity import GatewayIdentity
from gateway.settings import Settings
from tests.support import test_key as shared_key

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


class NoChannel:
    """The document needs no payment channel; this stands in so none is built."""


def build_app(pool=object()):
    identity = GatewayIdentity.from_private_key(shared_key(0))
    return create_app(Settings(), pool=pool, identity=identity, channel=NoChannel(), run_workers=False)


def served_operations(app) -> set[tuple[str, str]]:
    operations = set()
    for resource in app.router.resources():
        for route in resource:
            if route.method in ("HEAD", "*"):
                continue  # aiohttp adds HEAD to every GET
            operations.add((resource.canonical, route.method.lower()))
    return operations


def documented_operations() -> set[tuple[str, str]]:
    return {(path, method) for path, item in DOCUMENT["paths"].items() for method in item if method in HTTP_METHODS}


def test_every_served_route_is_documented():
    missing = served_operations(build_app()) - documented_operations()
    assert not missing, f"served but not documented: {sorted(missing)}"


def test_every_documented_operation_is_served():
    documented = documented_operations()
    assert len(documented) >= 10  # the walk found the document's operations
    unserved = documented - served_operations(build_app())
    assert not unserved, f"documented but not served: {sorted(unserved)}"


def test_path_parameters_match_the_template():
    for path, item in DOCUMENT["paths"].items():
        in_template = set(re.findall(r"{([^}]+)}", path))
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "path"}
            assert declared == in_template, (path, method, declared)


def test_signed_operations_document_the_signature_and_error_shape():
    for path, item in DOCUMENT["paths"].items():
        if not path.startswith("/v3/"):
            continue
        for method, operation in item.items():
            assert operation.get("security") == [{"wechatpay": []}], (path, method)
            assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"}, (path, method)


def test_the_document_is_valid_openapi():
    validator = pytest.importorskip("openapi_spec_validator")
    # Through JSON, as clients read it (tuples become lists and so on).
    validator.validate(json.loads(json.dumps(DOCUMENT)))


async def test_the_served_document_is_the_code_document(db_pool, aiohttp_client):
    client = await aiohttp_client(build_app(db_pool))
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert await response.json() == json.loads(json.dumps(DOCUMENT))
    # Not a /v3 resource: readable without a signature.
    assert "Authorization" not in response.request_info.headers
    async with db_pool.acquire() as conn:
        assert await invariants.check_invariants(conn) == []
