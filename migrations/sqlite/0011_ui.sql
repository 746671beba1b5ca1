-- An admin who resets a forgotten password may require the user to choose
-- their own at the next sign-in (issue 21): until then the account can only
-- read who it is, change its password and sign out.
ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;

-- Why a node is down, as the last probe that failed said it ("Connection
-- refused"): shown on its card, so a node added with a wrong address says
-- what is wrong (issue 21). NULL while the node answers.
ALTER TABLE nodes ADD COLUMN last_error TEXT;
