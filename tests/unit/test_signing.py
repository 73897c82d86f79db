"""gateway/signing.py: the bytes WeChat Pay v3 signs, the header it parses, the ciphers
it uses — checked against literal bytes and against the public `wechatpayv3` SDK, which is
what a mall backend will run."""

from __future__ import annotations

import base64

import pytest
from wechatpayv3 import utils as sdk

from gateway import signing
from tests.support import test_key as shared_key

KEY = shared_key(0)
OTHER_KEY = shared_key(1)
APIV3_KEY = b"0123456789abcdef0123456789abcdef"  # 32 ASCII bytes, like WeChat's APIv3 keys


# -- the signed messages, byte for byte ---------------------------------------------------

def test_request_message_for_get_has_empty_body_line():
    assert signing.request_message("GET", "/v3/x?a=1", "123", "N", b"") == b"GET\n/v3/x?a=1\n123\nN\n\n"


def test_request_message_keeps_target_and_body_bytes_exactly():
    body = '{"b":1, "a":"商场"}'.encode()
    message = signing.request_message("POST", "/v3/x/%2F?z=2&a=1", "1700000000", "NONCE", body)
    assert message == b"POST\n/v3/x/%2F?z=2&a=1\n1700000000\nNONCE\n" + body + b"\n"


def test_response_message_bytes():
    assert signing.response_message("1700000000", "N1", b"{}") == b"1700000000\nN1\n{}\n"
    assert signing.response_message("1700000000", "N1", b"") == b"1700000000\nN1\n\n"


# -- signatures ------------------------------------------------------------------------------

def test_sign_verify_roundtrip():
    message = signing.request_message("POST", "/v3/pay/partner/transactions/jsapi", "1", "N", b"{}")
    signature = signing.sign(KEY, message)
    assert signing.verify(KEY.public_key(), message, signature)


@pytest.mark.parametrize("tampered", [
    b"POST\n/v3/pay/partner/transactions/jsapi\n1\nN\n{}\n ",
    b"POST\n/v3/pay/partner/transactions/jsapi\n2\nN\n{}\n",
    b"GET\n/v3/pay/partner/transactions/jsapi\n1\nN\n{}\n",
    b"",
])
def test_tampered_message_does_not_verify(tampered):
    message = signing.request_message("POST", "/v3/pay/partner/transactions/jsapi", "1", "N", b"{}")
    signature = signing.sign(KEY, message)
    assert not signing.verify(KEY.public_key(), tampered, signature)


def test_signature_by_another_key_does_not_verify():
    signature = signing.sign(OTHER_KEY, b"m")
    assert not signing.verify(KEY.public_key(), b"m", signature)


@pytest.mark.parametrize("garbage", ["", "not base64!", "====", base64.b64encode(b"short").decode()])
def test_garbage_signature_does_not_verify(garbage):
    assert signing.verify(KEY.public_key(), b"m", garbage) is False


def test_signatures_interoperate_with_the_sdk():
    message = "1700000000\nNONCE\n{\"a\":1}\n"
    ours = signing.sign(KEY, message.encode())
    assert sdk.rsa_verify("1700000000", "NONCE", '{"a":1}', ours, KEY.public_key())
    theirs = sdk.rsa_sign(KEY, message)
    assert signing.verify(KEY.public_key(), message.encode(), theirs)


# -- the Authorization header ------------------------------------------------------------------

FIELDS = {"mchid": "1900000100", "nonce_str": "N0NCE", "signature": "c2ln", "timestamp": "1700000000",
          "serial_no": "ABC123"}


def header(fields: dict | list, schema: str = signing.SCHEMA) -> str:
    pairs = fields.items() if isinstance(fields, dict) else fields
    return f"{schema} " + ",".join(f'{k}="{v}"' for k, v in pairs)


@pytest.mark.parametrize("order", [
    ["mchid", "nonce_str", "signature", "timestamp", "serial_no"],
    ["serial_no", "timestamp", "signature", "nonce_str", "mchid"],
    ["signature", "mchid", "serial_no", "nonce_str", "timestamp"],
])
def test_parse_authorization_fields_in_any_order(order):
    parsed = signing.parse_authorization(header([(k, FIELDS[k]) for k in order]))
    assert parsed == signing.Authorization(**FIELDS)


def test_parse_authorization_tolerates_spaces_between_fields():
    text = f'{signing.SCHEMA} ' + ", ".join(f'{k}="{v}"' for k, v in FIELDS.items())
    assert signing.parse_authorization(text) == signing.Authorization(**FIELDS)


def test_parse_authorization_reads_what_the_sdk_builds():
    text = sdk.build_authorization("/v3/x", "GET", "1900000100", "SERIAL", KEY, nonce_str="ABC")
    parsed = signing.parse_authorization(text)
    assert (parsed.mchid, parsed.serial_no, parsed.nonce_str) == ("1900000100", "SERIAL", "ABC")
    message = signing.request_message("GET", "/v3/x", parsed.timestamp, "ABC", b"")
    assert signing.verify(KEY.public_key(), message, parsed.signature)


def test_build_then_parse_roundtrip():
    text = signing.build_authorization(mchid="1900000100", serial_no="S1", private_key=KEY, method="GET",
                                       target="/v3/x", body=b"", timestamp="1700000000", nonce="N")
    parsed = signing.parse_authorization(text)
    assert (parsed.mchid, parsed.serial_no) == ("1900000100", "S1")
    assert (parsed.timestamp, parsed.nonce_str) == ("1700000000", "N")
    assert signing.verify(KEY.public_key(), b"GET\n/v3/x\n1700000000\nN\n\n", parsed.signature)


@pytest.mark.parametrize("missing", sorted(signing.AUTH_FIELDS))
def test_parse_authorization_missing_field(missing):
    with pytest.raises(signing.MalformedAuthorization):
        signing.parse_authorization(header({k: v for k, v in FIELDS.items() if k != missing}))


def test_parse_authorization_empty_field_value():
    with pytest.raises(signing.MalformedAuthorization):
        signing.parse_authorization(header({**FIELDS, "nonce_str": ""}))


def test_parse_authorization_duplicate_field():
    pairs = list(FIELDS.items()) + [("mchid", "1900000999")]
    with pytest.raises(signing.MalformedAuthorization, match="duplicate"):
        signing.parse_authorization(header(pairs))


def test_parse_authorization_unknown_extra_field():
    with pytest.raises(signing.MalformedAuthorization):
        signing.parse_authorization(header({**FIELDS, "extra": "1"}))


@pytest.mark.parametrize("schema", ["WECHATPAY2-SHA256-RSA2048X", "Bearer", "wechatpay2-sha256-rsa2048", ""])
def test_parse_authorization_wrong_schema(schema):
    with pytest.raises(signing.MalformedAuthorization):
        signing.parse_authorization(header(FIELDS, schema=schema))


@pytest.mark.parametrize("garbage", [
    None, "", "   ", signing.SCHEMA, f"{signing.SCHEMA} ", f"{signing.SCHEMA} garbage",
    f'{signing.SCHEMA} mchid=1900000100,nonce_str="N"',  # unquoted value
    f'{signing.SCHEMA} mchid="19"00",nonce_str="N"',  # quote inside a value
    'Basic dXNlcjpwYXNz',
])
def test_parse_authorization_garbage(garbage):
    with pytest.raises(signing.MalformedAuthorization):
        signing.parse_authorization(garbage)


# -- AES-256-GCM (notification resources) ---------------------------------------------------------

def test_aes_gcm_roundtrip():
    plaintext = '{"out_trade_no":"ORDER-1","payer":{"sp_openid":"o1"}}'.encode()
    sealed = signing.aes_gcm_encrypt(APIV3_KEY, plaintext, "abcdefghijkl", "transaction")
    assert plaintext not in base64.b64decode(sealed)
    assert signing.aes_gcm_decrypt(APIV3_KEY, sealed, "abcdefghijkl", "transaction") == plaintext


def test_aes_gcm_opens_with_the_sdk():
    sealed = signing.aes_gcm_encrypt(APIV3_KEY, "商场".encode(), "abcdefghijkl", "transaction")
    assert sdk.aes_decrypt("abcdefghijkl", sealed, "transaction", APIV3_KEY.decode()) == "商场"


def _flip_one_bit(sealed_b64: str, index: int) -> str:
    raw = bytearray(base64.b64decode(sealed_b64))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("change", ["ciphertext", "tag", "nonce", "associated_data", "key", "not_base64"])
def test_aes_gcm_tampering_gives_none(change):
    sealed = signing.aes_gcm_encrypt(APIV3_KEY, b'{"total":100}', "abcdefghijkl", "transaction")
    args = {"apiv3_key": APIV3_KEY, "ciphertext_b64": sealed, "nonce": "abcdefghijkl", "associated_data": "transaction"}
    if change == "ciphertext":
        args["ciphertext_b64"] = _flip_one_bit(sealed, 0)
    elif change == "tag":
        args["ciphertext_b64"] = _flip_one_bit(sealed, -1)
    elif change == "nonce":
        args["nonce"] = "abcdefghijkm"
    elif change == "associated_data":
        args["associated_data"] = "refund"
    elif change == "key":
        args["apiv3_key"] = b"f" * 32
    else:
        args["ciphertext_b64"] = "%%% not base64 %%%"
    assert signing.aes_gcm_decrypt(**args) is None


# -- RSA-OAEP (sensitive request fields) --------------------------------------------------------------

def test_oaep_roundtrip():
    sealed = signing.oaep_encrypt(KEY.public_key(), "张三")
    assert sealed != signing.oaep_encrypt(KEY.public_key(), "张三")  # randomised padding
    assert signing.oaep_decrypt(KEY, sealed) == "张三"


def test_oaep_interoperates_with_the_sdk():
    assert signing.oaep_decrypt(KEY, sdk.rsa_encrypt("张三", KEY.public_key())) == "张三"
    assert sdk.rsa_decrypt(signing.oaep_encrypt(KEY.public_key(), "李四"), KEY) == "李四"


def test_oaep_wrong_key_or_tampered_gives_none():
    sealed = signing.oaep_encrypt(KEY.public_key(), "张三")
    assert signing.oaep_decrypt(OTHER_KEY, sealed) is None
    assert signing.oaep_decrypt(KEY, _flip_one_bit(sealed, 10)) is None
    assert signing.oaep_decrypt(KEY, "not base64 ***") is None


def test_secret_never_shows_its_value():
    secret = signing.Secret(b"topsecret")
    assert "topsecret" not in repr(secret) and "topsecret" not in str(secret) and "topsecret" not in f"{secret}"
    assert secret.reveal() == b"topsecret"
