-- Users (people and service accounts) and their API keys. Service accounts are
-- API-only: they never log in, they only hold keys.

CREATE TABLE users (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL,
    display_name text        NOT NULL DEFAULT '',
    email        text,
    kind         text        NOT NULL CONSTRAINT users_kind CHECK (kind IN ('person', 'service')),
    disabled     boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- Names are unique whatever their case: "deploy-bot" and "Deploy-Bot" are one.
CREATE UNIQUE INDEX users_name ON users (lower(name));

-- The secret of a key is 190 random bits, so a sha256 digest is enough (there is
-- nothing to guess). `key_id` is the public part of the key, shown in lists and logs.
CREATE TABLE api_keys (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id           bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose           text        NOT NULL,
    key_id            text        NOT NULL CONSTRAINT api_keys_key_id UNIQUE,
    digest            bytea       NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    revoked_at        timestamptz,
    last_used_at      timestamptz,
    last_used_address text
);
CREATE INDEX api_keys_user ON api_keys (user_id);
