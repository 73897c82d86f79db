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


def sealed_for_client(apiv3_key: bytes, plaintext: bytes, associated_data: str) -> dict:
    """`plaintext` encrypted with a client's APIv3 key as WeChat hands out what only the
    merchant may read (a notification's resource, a platform certificate): AES-256-GCM
    under a fresh nonce, with `associated_data` bound in."""
    nonce = secrets.token_hex(RESOURCE_NONCE_CHARS // 2)
    return {
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": signing.aes_gcm_encrypt(apiv3_key, plaintext, nonce, associated_data),
        "nonce": nonce,
        "associated_data": associated_data,
    }


def notification_body(row, apiv3_key: bytes) -> bytes:
    resource = {**sealed_for_client(apiv3_key, json_bytes(row["resource"]), row["original_type"]),
                "original_type": row["original_type"]}
    return json_bytes({
        "id": str(row["notification_id"]),
        "create_time": to_wechat_time(row["created_at"]),
        "event_type": row["event_type"],
        "resource_type": "encrypt-resource",
        "summary": row["summary"],
        "resource": resource,
    })
