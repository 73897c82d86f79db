"""The gateway's own signing key: signs every response and notification (SPEC 2.1)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from gateway import signing

PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"


@dataclass(frozen=True)
class GatewayIdentity:
    private_key: rsa.RSAPrivateKey
    public_key_id: str

    def __repr__(self) -> str:  # the key must never reach a log line
        return f"GatewayIdentity(public_key_id={self.public_key_id!r})"

    @property
    def public_key_pem(self) -> bytes:
        return signing.public_key_pem(self.private_key.public_key())

    def sign(self, message: bytes) -> str:
        return signing.sign(self.private_key, message)

    @classmethod
    def from_private_key(cls, key: rsa.RSAPrivateKey) -> "GatewayIdentity":
        fingerprint = signing.key_fingerprint(key.public_key())
        return cls(private_key=key, public_key_id=PUBLIC_KEY_ID_PREFIX + fingerprint[:32])


def load_or_create_identity(key_file: Path | None, data_dir: Path) -> GatewayIdentity:
    """Load the key from `key_file`; without one, use (or create once) a local key.

    A production deployment sets MALLPAY_GATEWAY_PRIVATE_KEY_FILE to a key it manages;
    the local key under the data directory serves the demo, tests and load tests.
    """
    if key_file is not None:
        return GatewayIdentity.from_private_key(signing.load_private_key(key_file.read_bytes()))
    path = data_dir / "gateway" / "private_key.pem"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(signing.private_key_pem(signing.generate_private_key()))
        # link() fails if another process won the race; its key is as good as ours.
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    return GatewayIdentity.from_private_key(signing.load_private_key(path.read_bytes()))
