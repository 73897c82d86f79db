"""The answer of `GET /v3/certificates` (下载平台证书): the gateway's certificate, encrypted
with the caller's APIv3 key so only that merchant can read it, as WeChat hands out its
platform certificates."""

from __future__ import annotations

from gateway.identity import GatewayIdentity
from gateway.shapes.notifications import sealed_for_client
from gateway.wire import to_wechat_time

ASSOCIATED_DATA = "certificate"


def certificates_json(identity: GatewayIdentity, apiv3_key: bytes) -> dict:
    certificate = identity.certificate
    return {"data": [{
        "serial_no": identity.certificate_serial,
        "effective_time": to_wechat_time(certificate.not_valid_before_utc),
        "expire_time": to_wechat_time(certificate.not_valid_after_utc),
        "encrypt_certificate": sealed_for_client(apiv3_key, identity.certificate_pem, ASSOCIATED_DATA),
    }]}
