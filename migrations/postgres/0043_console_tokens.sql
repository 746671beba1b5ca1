-- Console tokens: see migrations/sqlite/0043_console_tokens.sql.
CREATE TABLE console_tokens (
    hash TEXT COLLATE "C" CONSTRAINT "console_tokens.hash" PRIMARY KEY,
    kind TEXT COLLATE "C" NOT NULL,
    view_only BIGINT NOT NULL,
    vm_id TEXT COLLATE "C" NOT NULL,
    user_id TEXT COLLATE "C" NOT NULL,
    node_id TEXT COLLATE "C" NOT NULL,
    boot TEXT COLLATE "C" NOT NULL,
    record TEXT COLLATE "C" NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX console_tokens_vm ON console_tokens (vm_id);
CREATE INDEX console_tokens_expires ON console_tokens (expires_ms);
