"""Local key material is made once, privately, and agreed on by concurrent processes;
real credentials come from MALLPAY_CHANNEL_* files with clear errors."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from gateway import signing
from gateway.channel.credentials import (
    ChannelCredentialsError,
    ensure_local_credentials,
    load_channel_credentials_from_env,
)

SP_MCHID = "1900000100"


def _fingerprints(data_dir: str) -> tuple[str, str, bytes]:
    channel, emulator = ensure_local_credentials(Path(data_dir), SP_MCHID)
    merchant = signing.key_fingerprint(channel.merchant_private_key.reveal().public_key())
    return merchant, emulator.platform_public_key_id, channel.apiv3_key.reveal()


def test_local_credentials_are_created_once_private_and_pair_up(tmp_path):
    channel, emulator = ensure_local_credentials(tmp_path, SP_MCHID)
    again, _ = ensure_local_credentials(tmp_path, SP_MCHID)

    files = sorted(p for p in (tmp_path / "channel").iterdir())
    assert [p.name for p in files] == ["apiv3_key", "merchant_private_key.pem", "platform_private_key.pem"]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert again.merchant_serial_no == channel.merchant_serial_no
    assert again.apiv3_key.reveal() == channel.apiv3_key.reveal()

    # The emulator verifies what the gateway signs, and the gateway what the emulator signs.
    merchant_public = emulator.merchants[SP_MCHID].public_keys[channel.merchant_serial_no]
    message = b"POST\n/v3/x\n1\nN\n{}\n"
    assert signing.verify(merchant_public, message, signing.sign(channel.merchant_private_key.reveal(), message))
    assert signing.verify(channel.platform_public_key, message,
                          signing.sign(emulator.platform_private_key.reveal(), message))
    assert emulator.platform_public_key_id == channel.platform_public_key_id
    assert emulator.platform_public_key_id.startswith("PUB_KEY_ID_")
    assert emulator.merchants[SP_MCHID].apiv3_key.reveal() == channel.apiv3_key.reveal()
    assert len(channel.apiv3_key.reveal()) == 32
    assert "BEGIN" not in repr(channel) and "Secret('****')" in repr(channel)


def test_concurrent_first_runs_agree_on_the_same_keys(tmp_path):
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        results = pool.map(_fingerprints, [str(tmp_path)] * 4)
    assert len(set(results)) == 1
    assert not [p for p in (tmp_path / "channel").iterdir() if p.name.endswith(".tmp")]


def _write_real_files(tmp_path: Path) -> dict[str, str]:
    merchant_key = signing.generate_private_key()
    platform_key = signing.generate_private_key()
    (tmp_path / "apiclient_key.pem").write_bytes(signing.private_key_pem(merchant_key))
    (tmp_path / "pub_key.pem").write_bytes(signing.public_key_pem(platform_key.public_key()))
    (tmp_path / "apiv3").write_text("a" * 32 + "\n")
    return {
        "MALLPAY_CHANNEL_MCHID": "1230000109",
        "MALLPAY_CHANNEL_SERIAL_NO": "444f4864ea9b34415",
        "MALLPAY_CHANNEL_PRIVATE_KEY_FILE": str(tmp_path / "apiclient_key.pem"),
        "MALLPAY_CHANNEL_APIV3_KEY_FILE": str(tmp_path / "apiv3"),
        "MALLPAY_CHANNEL_PUBLIC_KEY_FILE": str(tmp_path / "pub_key.pem"),
        "MALLPAY_CHANNEL_PUBLIC_KEY_ID": "PUB_KEY_ID_0112345678",
    }


def test_real_credentials_load_from_env_files(tmp_path):
    credentials = load_channel_credentials_from_env(_write_real_files(tmp_path))
    assert credentials.sp_mchid == "1230000109"
    assert credentials.merchant_serial_no == "444F4864EA9B34415"
    assert credentials.apiv3_key.reveal() == b"a" * 32
    assert credentials.platform_public_key_id == "PUB_KEY_ID_0112345678"


def test_missing_or_broken_real_credentials_name_the_problem(tmp_path):
    env = _write_real_files(tmp_path)
    with pytest.raises(ChannelCredentialsError, match="MALLPAY_CHANNEL_SERIAL_NO.*MALLPAY_CHANNEL_PUBLIC_KEY_ID"):
        load_channel_credentials_from_env({k: v for k, v in env.items()
                                           if k not in ("MALLPAY_CHANNEL_SERIAL_NO", "MALLPAY_CHANNEL_PUBLIC_KEY_ID")})
    (tmp_path / "apiv3").write_text("too short")
    with pytest.raises(ChannelCredentialsError, match="32 bytes"):
        load_channel_credentials_from_env(env)
    with pytest.raises(ChannelCredentialsError, match="cannot read"):
        load_channel_credentials_from_env({**env, "MALLPAY_CHANNEL_PRIVATE_KEY_FILE": str(tmp_path / "nope.pem")})
    (tmp_path / "apiv3").write_text("b" * 32)
    (tmp_path / "pub_key.pem").write_text("not a key")
    with pytest.raises(ChannelCredentialsError, match="not an RSA PEM key"):
        load_channel_credentials_from_env(env)
