-- Campus sign-in (src/auth/sso.rs): which campus identity is which pvce user,
-- and how each session was opened.

-- One row per (provider, subject): the provider's stable id of the person
-- (OIDC `sub`), never the username, which a directory may reassign.
CREATE TABLE external_accounts (
    provider        TEXT NOT NULL,
    subject         TEXT NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at      TEXT NOT NULL,
    last_sign_in_at TEXT NOT NULL,
    CONSTRAINT external_accounts_key PRIMARY KEY (provider, subject),
    CONSTRAINT external_accounts_user_key UNIQUE (provider, user_id)
);

-- `local` (the password form) or the provider id that signed the session in;
-- NULL for sessions opened before this migration (all local).
ALTER TABLE sessions ADD COLUMN provider TEXT;
