"""The gateway's SQL: one module per table family, named constants, no formatted SQL."""
