"""Fixtures the channel tests share: the local sandbox credentials (the gateway's keys and
the emulator's platform keys, made once per module) and one HTTP client session a test."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.channel.credentials import LOCAL_SP_MCHID, ensure_local_credentials


@pytest.fixture(scope="module")
def credentials(tmp_path_factory):
    return ensure_local_credentials(tmp_path_factory.mktemp("data"), LOCAL_SP_MCHID)


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as session:
        yield session
