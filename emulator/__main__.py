"""`python -m emulator [--host H] [--port P] [--data-dir D] [--sp-mchid M]`.

Loads (creating once) the local keys under DATA_DIR/channel/, the same ones the gateway
uses in emulator mode, and reads knobs from MALLPAY_EMULATOR_* variables.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gateway.channel.credentials import LOCAL_SP_MCHID, ensure_local_credentials
from emulator import emulator_config_from_env, run_emulator

DEFAULT_PORT = 8090


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("MALLPAY_EMULATOR_PORT", DEFAULT_PORT)))
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MALLPAY_DATA_DIR", ".mallpay")))
    parser.add_argument("--sp-mchid", default=os.environ.get("MALLPAY_CHANNEL_MCHID", LOCAL_SP_MCHID))
    args = parser.parse_args(argv)
    _, emulator_credentials = ensure_local_credentials(args.data_dir, args.sp_mchid)
    run_emulator(args.host, args.port, emulator_config_from_env(emulator_credentials))


if __name__ == "__main__":
    main()
