"""`mallpay demo`: a whole mall trading on this machine, then a summary."""

from gateway.demo.run import run_demo

__all__ = ["run_demo"]
