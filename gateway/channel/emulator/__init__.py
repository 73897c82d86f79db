"""A local WeChat Pay: the service-provider API subset the gateway uses, over real HTTP.

It checks merchant signatures, signs its answers with a platform key, keeps orders in
memory (bounded), lets a test or the demo "pay" an order, and sends encrypted payment
notifications with WeChat's retry schedule. Delays, failure rates and duplicate
notifications are knobs (`EmulatorConfig`) so the gateway's unhappy paths run for real.

One module per resource: orders.py, sandbox.py (local levers), notify.py; auth.py is the
signing glue, state.py the memory, app.py the composition root.
"""

from gateway.channel.emulator.app import create_emulator_app, run_emulator, start_emulator
from gateway.channel.emulator.config import EmulatorConfig, EmulatorConfigError, emulator_config_from_env

__all__ = [
    "EmulatorConfig",
    "EmulatorConfigError",
    "create_emulator_app",
    "emulator_config_from_env",
    "run_emulator",
    "start_emulator",
]
