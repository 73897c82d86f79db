"""A notification to a client in WeChat's shape: the envelope around a resource (built by
`transactions`, `refunds` or `profitsharing`) encrypted with the client's APIv3 key."""

from __future__ import annotations

import secrets

from gateway import signing
from gateway.wire import json_bytes, to_wechat_time

RESOURCE_NONCE_CHARS = 12


def notification_body(row, apiv3_key: bytes) -> bytes:
    nonce = secrets.token_hex(RESOURCE_NONCE_CHARS // 2)
    plaintext = json_bytes(row["resource"])
    resource = {
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": signing.aes_gcm_encrypt(apiv3_key, plaintext, nonce, row["original_type"]),
        "nonce": nonce,
        "associated_data": row["original_type"],
        "original_type": row["original_type"],
    }
    return json_bytes({
        "id": str(row["notification_id"]),
        "create_time": to_wechat_time(row["created_at"]),
        "event_type": row["event_type"],
        "resource_type": "encrypt-resource",
        "summary": row["summary"],
        "resource": resource,
    })
