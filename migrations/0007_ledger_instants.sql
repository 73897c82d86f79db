-- Statements, balances at an instant and ledger exports read transfers by time: a
-- transfer's created_at is its instant (SPEC 6).
CREATE INDEX transfers_by_time ON transfers (mall_id, created_at, transfer_id);
