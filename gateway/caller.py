"""Who is behind a request: the authenticated API client, as every layer sees it."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.signing import Secret

# How a client verifies what the gateway signs, as registered (clients.verification).
VERIFICATION_MODES = ("public_key", "certificate")


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated client behind a request."""

    client_id: str
    mall_id: str
    sp_appid: str
    role: str
    sub_mchid: str | None
    apiv3_key: Secret
    # One of VERIFICATION_MODES: which name of the gateway's key its answers carry
    # (gateway.auth.answering_serial), the public key id or the certificate's serial.
    verification: str = "public_key"

    def names_its_mall(self, sp_mchid: str | None) -> bool:
        """Partner-mode SDKs send the client's own mchid as `sp_mchid`; the mall's own
        sp_mchid is what a hand-written backend sends. Both name the caller's mall."""
        return sp_mchid is not None and sp_mchid in (self.mall_id, self.client_id)

    def sees_store(self, sub_mchid: str | None) -> bool:
        """A tenant sees only its own store; another store's data must look missing,
        so callers check this after the lookup and answer as for a missing resource."""
        return self.role != "tenant" or sub_mchid == self.sub_mchid
