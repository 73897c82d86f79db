"""下载平台证书, for SDKs in WeChat's platform certificate mode:

  GET /v3/certificates -> {"data": [{serial_no, effective_time, expire_time, encrypt_certificate}]}

The certificate is the gateway's own key under a second name (gateway.identity), encrypted
with the caller's APIv3 key. Any registered client may download it, whatever its role or
verification mode; the answer is always signed under the certificate's serial.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api import caller_of, json_response, services_of
from gateway.api.middleware import signed_with_certificate
from gateway.shapes.certificates import certificates_json

routes = web.RouteTableDef()


@routes.get("/v3/certificates")
@signed_with_certificate
async def certificates(request: web.Request) -> web.Response:
    identity = services_of(request).identity
    return json_response(certificates_json(identity, caller_of(request).apiv3_key.reveal()))
