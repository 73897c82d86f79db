"""Mall Pay gateway: the HTTP edge, orchestration and the payment channel."""
