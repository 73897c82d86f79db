"""A local WeChat Pay: the service-provider API subset the gateway uses, over real HTTP.

It checks merchant signatures, signs its answers with a platform key, keeps orders in
memory (bounded), lets a test or the demo "pay" an order, and sends encrypted
notifications with WeChat's retry schedule. Behind the API is a money model (funds.py):
fees, each store's frozen and available money, receivers' balances, so the profit-sharing
and refund rules bite as WeChat's do. Delays, failure rates and duplicate notifications
are knobs (`EmulatorConfig`) so the gateway's unhappy paths run for real.

One module per resource: orders.py, profitsharing.py (split orders, unfreeze, amounts,
ratios), receivers.py, return_orders.py, refunds.py, sandbox.py (local levers); notify.py
and jobs.py deliver and finish things later; auth.py and fields.py are the signing and
validation glue; state.py, funds.py, split_book.py and refund_book.py the memory; app.py
the composition root.
"""

from emulator.app import create_emulator_app, run_emulator, start_emulator
from emulator.config import EmulatorConfig, EmulatorConfigError, emulator_config_from_env

__all__ = [
    "EmulatorConfig",
    "EmulatorConfigError",
    "create_emulator_app",
    "emulator_config_from_env",
    "run_emulator",
    "start_emulator",
]
