"""The gateway's key under its two names: the public key id and a certificate made from
the key alone (platform certificate mode), and which name an answer carries."""

from __future__ import annotations

from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.hazmat.primitives.asymmetric import padding

from gateway import signing
from gateway.auth import answering_serial, serial_for_mode
from gateway.caller import Caller
from gateway.identity import GatewayIdentity, certificate_for
from tests.support import test_key as shared_key

NOW = datetime.now(timezone.utc)


def identity(index: int = 0) -> GatewayIdentity:
    return GatewayIdentity.from_private_key(shared_key(index))


def test_the_certificate_is_the_same_bytes_for_the_same_key():
    key = shared_key()
    # A key loaded again from its PEM, as another gateway process would.
    again = GatewayIdentity.from_private_key(signing.load_private_key(signing.private_key_pem(key)))
    assert identity().certificate_pem == again.certificate_pem
    assert certificate_for(key).public_bytes(Encoding.DER) == certificate_for(key).public_bytes(Encoding.DER)
    assert identity().certificate_serial == again.certificate_serial


def test_another_key_has_another_certificate_and_serial():
    assert identity(0).certificate_pem != identity(1).certificate_pem
    assert identity(0).certificate_serial != identity(1).certificate_serial


def test_the_serial_is_40_upper_case_hex_digits_however_it_is_printed():
    for index in (0, 1, 2):
        me = identity(index)
        certificate = x509.load_pem_x509_certificate(me.certificate_pem)
        assert len(me.certificate_serial) == 40 and me.certificate_serial == me.certificate_serial.upper()
        assert int(me.certificate_serial, 16) == certificate.serial_number
        # As the SDKs print it: the integer in hex (wechatpayv3, WxJava) and the bytes (Go, Java)
        assert hex(certificate.serial_number)[2:].upper() == me.certificate_serial
        assert certificate.serial_number.to_bytes(20, "big").hex().upper() == me.certificate_serial
        assert 0x10 <= certificate.serial_number.to_bytes(20, "big")[0] <= 0x1F


def test_the_certificate_carries_the_key_and_verifies_with_it():
    me = identity()
    certificate = x509.load_pem_x509_certificate(me.certificate_pem)
    public_key = shared_key().public_key()
    assert signing.public_key_pem(certificate.public_key()) == me.public_key_pem
    public_key.verify(certificate.signature, certificate.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())
    assert certificate.signature_hash_algorithm.name == "sha256"
    assert certificate.issuer == certificate.subject
    # What the gateway signs verifies with the certificate's key, as an SDK checks it.
    message = signing.response_message("1700000000", "NONCE", b'{"a":1}')
    assert signing.verify(certificate.public_key(), message, me.sign(message))


def test_the_certificate_is_valid_now_and_for_decades():
    certificate = identity().certificate
    assert certificate.not_valid_before_utc <= NOW <= certificate.not_valid_after_utc
    assert certificate.not_valid_after_utc.year == 2049


def test_a_request_naming_either_name_is_answered_under_that_name():
    me = identity()
    for mode in ("public_key", "certificate"):
        caller = Caller("1900000100", "1900000100", "wx8888888888888888", "mall_app", None,
                        signing.Secret(b"k" * 32), verification=mode)
        assert answering_serial(me, me.public_key_id, caller) == me.public_key_id
        assert answering_serial(me, me.certificate_serial, caller) == me.certificate_serial
        assert answering_serial(me, me.certificate_serial.lower(), caller) == me.certificate_serial
        # A name of another key, or none: the client's mode decides.
        assert answering_serial(me, identity(1).certificate_serial, caller) == serial_for_mode(me, mode)
        assert answering_serial(me, None, caller) == serial_for_mode(me, mode)
    assert serial_for_mode(me, "certificate") == me.certificate_serial
    assert serial_for_mode(me, "public_key") == me.public_key_id
    # Before authentication (a SIGN_ERROR) there is no caller: the public key id, as always.
    assert answering_serial(me, None, None) == me.public_key_id
    assert answering_serial(me, me.certificate_serial, None) == me.certificate_serial
