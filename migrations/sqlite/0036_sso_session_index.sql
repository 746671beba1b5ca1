-- A campus session opened through CAS remembers (the hash of) the ticket
-- that opened it, so the CAS server's single sign-out (a LogoutRequest
-- naming that ticket) ends exactly that session.
ALTER TABLE sessions ADD COLUMN sso_session_index TEXT;
CREATE INDEX sessions_sso_index_idx ON sessions(provider, sso_session_index);
