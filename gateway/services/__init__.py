"""Use cases: one async function per command, one database transaction per money effect."""
