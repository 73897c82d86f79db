"""Keys the gateway uses towards the payment channel, and the ones the emulator answers with.

Towards WeChat Pay the gateway is the mall's service-provider merchant (`sp_mchid`): it
signs with its merchant key (named by `merchant_serial_no`), verifies WeChat's answers and
notifications with WeChat's platform public key (named by a `PUB_KEY_ID_...`), and opens
notification resources with its 32-byte APIv3 key.

For local runs (demo, tests, load tests) `ensure_local_credentials` makes both sides' keys
once under `data_dir/channel/` so the gateway and the emulator, possibly separate
processes, load the same material. For real WeChat Pay `load_channel_credentials_from_env`
reads the operator's files.
"""

from __future__ import annotations

import os
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from gateway import signing
from gateway.signing import Secret

# The mall's merchant id in local runs; real ids come from MALLPAY_CHANNEL_MCHID.
LOCAL_SP_MCHID = "1900000100"
PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"
# WeChat's merchant certificate serial numbers are 40 upper-case hex digits.
MERCHANT_SERIAL_NO_CHARS = 40

_MERCHANT_KEY_FILE = "merchant_private_key.pem"
_PLATFORM_KEY_FILE = "platform_private_key.pem"
_APIV3_KEY_FILE = "apiv3_key"
_APIV3_KEY_ALPHABET = string.ascii_letters + string.digits

ENV_MCHID = "MALLPAY_CHANNEL_MCHID"
ENV_SERIAL_NO = "MALLPAY_CHANNEL_SERIAL_NO"
ENV_PRIVATE_KEY_FILE = "MALLPAY_CHANNEL_PRIVATE_KEY_FILE"
ENV_APIV3_KEY_FILE = "MALLPAY_CHANNEL_APIV3_KEY_FILE"
ENV_PUBLIC_KEY_FILE = "MALLPAY_CHANNEL_PUBLIC_KEY_FILE"
ENV_PUBLIC_KEY_ID = "MALLPAY_CHANNEL_PUBLIC_KEY_ID"
ENV_REQUIRED = (
    ENV_MCHID, ENV_SERIAL_NO, ENV_PRIVATE_KEY_FILE,
    ENV_APIV3_KEY_FILE, ENV_PUBLIC_KEY_FILE, ENV_PUBLIC_KEY_ID,
)


class ChannelCredentialsError(ValueError):
    """Channel credentials are missing or unreadable; the process must not start."""


@dataclass(frozen=True)
class ChannelCredentials:
    """What the gateway holds to talk to WeChat Pay as the mall's service provider."""

    sp_mchid: str
    merchant_serial_no: str
    merchant_private_key: Secret  # wraps an rsa.RSAPrivateKey
    apiv3_key: Secret  # wraps 32 bytes
    platform_public_key: rsa.RSAPublicKey
    platform_public_key_id: str

    def __post_init__(self) -> None:
        assert isinstance(self.merchant_private_key.reveal(), rsa.RSAPrivateKey)
        assert len(self.apiv3_key.reveal()) == signing.APIV3_KEY_BYTES
        assert self.platform_public_key_id.startswith(PUBLIC_KEY_ID_PREFIX)


@dataclass(frozen=True)
class EmulatorMerchant:
    """A service-provider merchant the emulator knows: its request keys and APIv3 key."""

    mchid: str
    public_keys: Mapping[str, rsa.RSAPublicKey]  # merchant serial_no -> public key
    apiv3_key: Secret  # wraps 32 bytes

    def __post_init__(self) -> None:
        assert self.public_keys, "a merchant needs at least one request key"
        assert len(self.apiv3_key.reveal()) == signing.APIV3_KEY_BYTES


@dataclass(frozen=True)
class EmulatorCredentials:
    """What the emulator holds in WeChat Pay's place: its platform key and the merchants."""

    platform_private_key: Secret  # wraps an rsa.RSAPrivateKey
    platform_public_key_id: str
    merchants: Mapping[str, EmulatorMerchant]  # mchid -> merchant

    def __post_init__(self) -> None:
        assert isinstance(self.platform_private_key.reveal(), rsa.RSAPrivateKey)
        assert self.platform_public_key_id.startswith(PUBLIC_KEY_ID_PREFIX)


def merchant_serial_no_for(public_key: rsa.RSAPublicKey) -> str:
    return signing.key_fingerprint(public_key)[:MERCHANT_SERIAL_NO_CHARS]


def platform_public_key_id_for(public_key: rsa.RSAPublicKey) -> str:
    return PUBLIC_KEY_ID_PREFIX + signing.key_fingerprint(public_key)[:32]


def ensure_local_credentials(data_dir: Path, sp_mchid: str) -> tuple[ChannelCredentials, EmulatorCredentials]:
    """Create (once) and load the local merchant key, platform key and APIv3 key.

    Files are created 0600 under `data_dir/channel/`. Each is written to a private temp
    file and then hard-linked into place, which fails if another process got there
    first; the loser discards its copy and everyone loads the winner's. So two processes
    (gateway and emulator) starting together always end up with the same keys.
    """
    directory = Path(data_dir) / "channel"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    merchant_key = signing.load_private_key(
        _create_once(directory / _MERCHANT_KEY_FILE, lambda: signing.private_key_pem(signing.generate_private_key()))
    )
    platform_key = signing.load_private_key(
        _create_once(directory / _PLATFORM_KEY_FILE, lambda: signing.private_key_pem(signing.generate_private_key()))
    )
    apiv3_key = _read_apiv3_key(_create_once(directory / _APIV3_KEY_FILE, _new_apiv3_key))

    merchant_public = merchant_key.public_key()
    platform_public = platform_key.public_key()
    serial_no = merchant_serial_no_for(merchant_public)
    public_key_id = platform_public_key_id_for(platform_public)
    channel = ChannelCredentials(
        sp_mchid=sp_mchid,
        merchant_serial_no=serial_no,
        merchant_private_key=Secret(merchant_key),
        apiv3_key=Secret(apiv3_key),
        platform_public_key=platform_public,
        platform_public_key_id=public_key_id,
    )
    merchant = EmulatorMerchant(mchid=sp_mchid, public_keys={serial_no: merchant_public}, apiv3_key=Secret(apiv3_key))
    emulator = EmulatorCredentials(
        platform_private_key=Secret(platform_key),
        platform_public_key_id=public_key_id,
        merchants={sp_mchid: merchant},
    )
    return channel, emulator


def load_channel_credentials_from_env(env: Mapping[str, str] | None = None) -> ChannelCredentials:
    """Read the mall's real WeChat Pay credentials named by MALLPAY_CHANNEL_* variables."""
    env = os.environ if env is None else env
    missing = [name for name in ENV_REQUIRED if not env.get(name, "").strip()]
    if missing:
        raise ChannelCredentialsError("missing channel credentials: set " + ", ".join(missing))
    public_key_id = env[ENV_PUBLIC_KEY_ID].strip()
    if not public_key_id.startswith(PUBLIC_KEY_ID_PREFIX):
        raise ChannelCredentialsError(f"{ENV_PUBLIC_KEY_ID} must start with {PUBLIC_KEY_ID_PREFIX}")
    private_pem = _read_file(env, ENV_PRIVATE_KEY_FILE)
    public_pem = _read_file(env, ENV_PUBLIC_KEY_FILE)
    try:
        private_key = signing.load_private_key(private_pem)
        public_key = signing.load_public_key(public_pem)
    except (ValueError, TypeError, AssertionError) as exc:
        # The cryptography error text names no key material, only what was wrong.
        raise ChannelCredentialsError(f"channel key file is not an RSA PEM key: {type(exc).__name__}") from None
    apiv3_key = _read_apiv3_key(_read_file(env, ENV_APIV3_KEY_FILE), source=ENV_APIV3_KEY_FILE)
    return ChannelCredentials(
        sp_mchid=env[ENV_MCHID].strip(),
        merchant_serial_no=env[ENV_SERIAL_NO].strip().upper(),
        merchant_private_key=Secret(private_key),
        apiv3_key=Secret(apiv3_key),
        platform_public_key=public_key,
        platform_public_key_id=public_key_id,
    )


def _read_file(env: Mapping[str, str], name: str) -> bytes:
    path = Path(env[name].strip())
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ChannelCredentialsError(f"{name}: cannot read {path} ({exc.strerror})") from None


def _read_apiv3_key(raw: bytes, *, source: str = _APIV3_KEY_FILE) -> bytes:
    key = raw.strip()
    if len(key) != signing.APIV3_KEY_BYTES:
        raise ChannelCredentialsError(f"{source}: the APIv3 key must be {signing.APIV3_KEY_BYTES} bytes")
    return key


def _new_apiv3_key() -> bytes:
    # WeChat's APIv3 keys are 32 printable characters used as raw AES-256 key bytes.
    return "".join(secrets.choice(_APIV3_KEY_ALPHABET) for _ in range(signing.APIV3_KEY_BYTES)).encode()


def _create_once(path: Path, make: Callable[[], bytes]) -> bytes:
    """Return the file's content, creating it 0600 first if it does not exist yet."""
    if not path.exists():
        temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(make())
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temp, path)  # atomic, and refuses to replace a winner's file
            except FileExistsError:
                pass
        finally:
            temp.unlink(missing_ok=True)
    return path.read_bytes()
