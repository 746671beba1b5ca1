-- Console tokens (src/console/tokens.rs): single-use, short-lived tickets for
-- a console WebSocket, kept in the database so that a token issued by one
-- pvce server can be redeemed on another (several servers behind a load
-- balancer). Only the token's SHA-256 is stored; redeeming deletes the row
-- (DELETE … RETURNING), so a token opens at most one session cluster-wide.
-- `expires_ms` is Unix milliseconds; expired rows are purged on issue.
CREATE TABLE console_tokens (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    view_only INTEGER NOT NULL,
    vm_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    boot TEXT NOT NULL,
    record TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX console_tokens_vm ON console_tokens (vm_id);
CREATE INDEX console_tokens_expires ON console_tokens (expires_ms);
