"""A notification to a client in WeChat's shape: what it says (`Notice`: event type,
summary and resource, built by `transactions`, `refunds` or `profitsharing`) and the
envelope it travels in, the resource encrypted with the client's APIv3 key."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from gateway import signing
from gateway.wire import json_bytes, to_wechat_time

RESOURCE_NONCE_CHARS = 12


@dataclass(frozen=True, slots=True)
class Notice:
    event_type: str  # TRANSACTION.SUCCESS, REFUND.SUCCESS, PROFITSHARING.SUCCESS...
    summary: str
    original_type: str  # the resource's kind, also the encryption's associated data
    resource: dict

    def columns(self) -> dict:
        """As the outbox stores it (`gateway.repo.outbox`); the resource is not copied (the
        payment's hot path builds one per payment)."""
        return {"event_type": self.event_type, "summary": self.summary, "original_type": self.original_type,
                "resource": self.resource}


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
