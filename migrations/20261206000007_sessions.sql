-- Sign-in: people's passwords, their link to the OpenID provider, browser sessions,
-- sign-ins in progress at the provider, and recent failed logins (to slow a flood).
-- No secret is kept in clear: a password as its argon2id hash, a session's and a
-- pending sign-in's random secrets as sha256 digests.

ALTER TABLE users
    ADD COLUMN password_hash       text,
    ADD COLUMN password_changed_at timestamptz,
    ADD COLUMN oidc_issuer         text,
    ADD COLUMN oidc_subject        text,
    -- Only people sign in.
    ADD CONSTRAINT users_password_person CHECK (password_hash IS NULL OR kind = 'person'),
    ADD CONSTRAINT users_oidc_person CHECK (oidc_subject IS NULL OR kind = 'person');
CREATE UNIQUE INDEX users_oidc_subject ON users (oidc_issuer, oidc_subject)
    WHERE oidc_subject IS NOT NULL;

-- A browser session. The cookie holds `<public_id>.<secret>`; only the digest of the
-- whole cookie value is kept. `public_id` names the session in audit rows and logs.
CREATE TABLE sessions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id    text        NOT NULL CONSTRAINT sessions_public_id UNIQUE,
    digest       bytea       NOT NULL CONSTRAINT sessions_digest UNIQUE,
    user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    login        text        NOT NULL CONSTRAINT sessions_login CHECK (login IN ('password', 'oidc')),
    address      text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    -- The absolute end; the idle end is last_seen_at plus the node's idle timeout.
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- A sign-in sent to the OpenID provider and not yet back. The callback may reach any
-- node, so it is kept here. `state_digest` is the digest of the `state` parameter;
-- `browser_digest` the digest of the cookie that binds the sign-in to the browser
-- that began it (the PKCE verifier and the nonce are derived from that cookie, so
-- neither is stored).
CREATE TABLE oidc_logins (
    state_digest   bytea       PRIMARY KEY,
    browser_digest bytea       NOT NULL,
    -- Begun by `capstan login --browser`: the loopback port its listener waits on.
    -- The sign-in then ends with a one-time code for that listener, not a session.
    cli_port       integer     CONSTRAINT oidc_logins_cli_port CHECK (cli_port BETWEEN 1024 AND 65535),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX oidc_logins_expires ON oidc_logins (expires_at);

-- One-time codes handed to `capstan login --browser` through the browser, exchanged
-- once (within minutes) for an API key of the person who signed in. Kept as digests.
CREATE TABLE login_codes (
    digest     bytea       PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);

-- Recent failed password logins, shared by every node. `account` is the digest of
-- the lower-cased name as typed (a name that exists or not reads the same, and a
-- password typed into the name field is not kept in clear).
CREATE TABLE login_failures (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    account bytea       NOT NULL,
    address text        NOT NULL
);
CREATE INDEX login_failures_account ON login_failures (account, at);
CREATE INDEX login_failures_address ON login_failures (address, at);
CREATE INDEX login_failures_at ON login_failures (at);
