"""The gateway's own signing key: signs every response and notification (SPEC 2.1).

Clients know the key under one of two names, as WeChat Pay's SDKs do: its public key id
(`PUB_KEY_ID_…`, 微信支付公钥 mode) or the serial number of a certificate for it (平台证书
mode, downloaded from `GET /v3/certificates`). The certificate is made from the key alone,
so every gateway process holding the key serves the same certificate under the same serial.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway import signing

PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"
# The certificate's fixed parts. Self-signed: the key is the gateway's, nobody else vouches
# for it, and SDKs in platform certificate mode trust what /v3/certificates hands them.
CERTIFICATE_NAME = x509.Name([
    x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Mall Pay"),
    x509.NameAttribute(NameOID.COMMON_NAME, "Mall Pay gateway"),
])
CERTIFICATE_NOT_BEFORE = datetime(2024, 1, 1, tzinfo=timezone.utc)
# WeChat's platform certificates last five years and are replaced by a new one; this one
# cannot be replaced without a new key (it is a pure function of the key), so it lasts as
# long as a key may be in use. 2049-12-31 is the last day X.509 writes as UTCTime (RFC 5280
# 4.1.2.5): later dates need GeneralizedTime, which some older certificate readers mishandle.
CERTIFICATE_NOT_AFTER = datetime(2049, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
CERTIFICATE_SERIAL_BYTES = 20  # the most RFC 5280 allows, as WeChat's serials are


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

    @cached_property
    def certificate(self) -> x509.Certificate:
        return certificate_for(self.private_key)

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @cached_property
    def certificate_serial(self) -> str:
        """The certificate's serial as SDKs write it in Wechatpay-Serial: 40 upper-case hex digits."""
        return f"{self.certificate.serial_number:0{2 * CERTIFICATE_SERIAL_BYTES}X}"

    def name_of(self, serial: str | None) -> str | None:
        """The name of this key that `serial` (a request's Wechatpay-Serial) gives, as the
        gateway writes it; None when it names neither."""
        if serial == self.public_key_id:
            return self.public_key_id
        if serial is not None and serial.upper() == self.certificate_serial:
            return self.certificate_serial
        return None

    @classmethod
    def from_private_key(cls, key: rsa.RSAPrivateKey) -> "GatewayIdentity":
        fingerprint = signing.key_fingerprint(key.public_key())
        return cls(private_key=key, public_key_id=PUBLIC_KEY_ID_PREFIX + fingerprint[:32])


def certificate_serial_number(public_key: rsa.RSAPublicKey) -> int:
    """20 bytes of the key's SHA-256 fingerprint, the first set to 0x10-0x1F: positive, and
    40 hex digits however an SDK prints it (the bytes, or the integer without leading zeros)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = bytearray(hashlib.sha256(der).digest()[:CERTIFICATE_SERIAL_BYTES])
    digest[0] = 0x10 | (digest[0] & 0x0F)
    return int.from_bytes(digest, "big")


def certificate_for(key: rsa.RSAPrivateKey) -> x509.Certificate:
    """A self-signed certificate for `key`, the same bytes every time: every field is fixed
    or follows from the key, and a PKCS#1 v1.5 signature has no randomness."""
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(CERTIFICATE_NAME)
        .issuer_name(CERTIFICATE_NAME)
        .public_key(public_key)
        .serial_number(certificate_serial_number(public_key))
        .not_valid_before(CERTIFICATE_NOT_BEFORE)
        .not_valid_after(CERTIFICATE_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
    )
    return builder.sign(key, hashes.SHA256())


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
