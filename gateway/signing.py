"""WeChat Pay API v3 signatures and encryption, both directions.

Everything here is a thin layer over `cryptography`: RSA-PKCS1v15-SHA256 signatures,
RSA-OAEP(SHA-1) for sensitive fields and AES-256-GCM for notification resources,
exactly as WeChat Pay v3 specifies them. Used by the gateway's own API edge, by the
channel client that talks to WeChat Pay, and by the emulator that stands in for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass, fields

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
# Field values are printable ASCII without quotes, bounded: what WeChat's fields are
# (digits, hex, base64). Anything else — non-ASCII digits, undecodable bytes — is malformed.
_AUTH_FIELD_RE = re.compile(r'\s*([a-z_]+)="([\x21\x23-\x7e]{0,512})"\s*')
APIV3_KEY_BYTES = 32
NONCE_CHARS = 32


class Secret:
    """A secret value whose repr and str never show it (keys, apiv3 keys)."""

    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = value

    def reveal(self):
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__


def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(pem: bytes | str) -> rsa.RSAPrivateKey:
    if isinstance(pem, str):
        pem = pem.encode()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey), "WeChat Pay v3 keys are RSA"
    return key


def load_public_key(pem: bytes | str) -> rsa.RSAPublicKey:
    if isinstance(pem, str):
        pem = pem.encode()
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key, rsa.RSAPublicKey), "WeChat Pay v3 keys are RSA"
    return key


def key_fingerprint(public_key: rsa.RSAPublicKey) -> str:
    """A stable id for a public key: upper-case hex of SHA-256 over its DER form."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest().upper()


def new_nonce() -> str:
    return secrets.token_hex(NONCE_CHARS // 2).upper()


def request_message(method: str, target: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The string a client signs: METHOD\\nTARGET\\nTIMESTAMP\\nNONCE\\nBODY\\n."""
    head = f"{method}\n{target}\n{timestamp}\n{nonce}\n".encode()
    return head + body + b"\n"


def response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """The string a response or notification is signed over: TS\\nNONCE\\nBODY\\n."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def verify(public_key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Authorization:
    """The fields of a `WECHATPAY2-SHA256-RSA2048` Authorization header, in the order written."""

    mchid: str
    nonce_str: str
    signature: str
    timestamp: str
    serial_no: str

    def header(self) -> str:
        written = ",".join(f'{field.name}="{getattr(self, field.name)}"' for field in fields(self))
        return f"{SCHEMA} {written}"


AUTH_FIELDS = frozenset(field.name for field in fields(Authorization))


class MalformedAuthorization(ValueError):
    """The Authorization header is absent, of another schema, or lacks a field."""


def parse_authorization(header: str | None) -> Authorization:
    """Parse `WECHATPAY2-SHA256-RSA2048 k="v",...` with its fields in any order."""
    if not header:
        raise MalformedAuthorization("missing")
    schema, _, rest = header.strip().partition(" ")
    if schema != SCHEMA:
        raise MalformedAuthorization("schema")
    found: dict[str, str] = {}
    for part in rest.split(","):
        match = _AUTH_FIELD_RE.fullmatch(part)
        if match is None:
            raise MalformedAuthorization("syntax")
        name, value = match.groups()
        if name in found:
            raise MalformedAuthorization("duplicate field")
        found[name] = value
    if set(found) != AUTH_FIELDS or not all(found.values()):
        raise MalformedAuthorization("fields")
    return Authorization(**found)


def build_authorization(
    *,
    mchid: str,
    serial_no: str,
    private_key: rsa.RSAPrivateKey,
    method: str,
    target: str,
    body: bytes,
    timestamp: str,
    nonce: str,
) -> str:
    signature = sign(private_key, request_message(method, target, timestamp, nonce, body))
    return Authorization(mchid, nonce, signature, timestamp, serial_no).header()


def aes_gcm_encrypt(apiv3_key: bytes, plaintext: bytes, nonce: str, associated_data: str) -> str:
    assert len(apiv3_key) == APIV3_KEY_BYTES
    sealed = AESGCM(apiv3_key).encrypt(nonce.encode(), plaintext, associated_data.encode())
    return base64.b64encode(sealed).decode()


def aes_gcm_decrypt(apiv3_key: bytes, ciphertext_b64: str, nonce: str, associated_data: str) -> bytes | None:
    """None when the tag does not verify (wrong key or tampered resource)."""
    assert len(apiv3_key) == APIV3_KEY_BYTES
    try:
        sealed = base64.b64decode(ciphertext_b64, validate=True)
        return AESGCM(apiv3_key).decrypt(nonce.encode(), sealed, associated_data.encode())
    except (InvalidTag, binascii.Error, ValueError):
        return None


def oaep_encrypt(public_key: rsa.RSAPublicKey, text: str) -> str:
    sealed = public_key.encrypt(text.encode(), _oaep())
    return base64.b64encode(sealed).decode()


def oaep_decrypt(private_key: rsa.RSAPrivateKey, ciphertext_b64: str) -> str | None:
    try:
        return private_key.decrypt(base64.b64decode(ciphertext_b64, validate=True), _oaep()).decode()
    except (ValueError, binascii.Error):
        return None


def _oaep() -> padding.OAEP:
    # WeChat Pay v3 encrypts sensitive fields with OAEP over SHA-1 (its documented choice).
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
