-- Sensitive values, encrypted at rest under the cluster's master key
-- (CAPSTAN_MASTER_KEY). The key itself is never stored: each version of it is known
-- by a key-check value, a fixed constant encrypted under that key, which lets a node
-- tell at start whether the key it was given is one of these.

CREATE TABLE master_keys (
    version          integer     CONSTRAINT master_keys_pkey PRIMARY KEY
                     CONSTRAINT master_keys_version_positive CHECK (version > 0),
    -- The key-check value: AES-256-GCM of a constant under this version's key.
    check_nonce      bytea       NOT NULL,
    check_ciphertext bytea       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- When this version last became the one new values are sealed under.
    activated_at     timestamptz,
    -- Exactly one version is active once any node with a key has started. A version
    -- registered during a rotation stays inactive until `capstan master-key rotate`,
    -- so nodes still on the old key keep sealing under a key they hold.
    active           boolean     NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX master_keys_one_active ON master_keys (active) WHERE active;

-- One encrypted value per row. The row's id is part of the associated data, so a
-- ciphertext copied into another row does not decrypt there.
CREATE TABLE secrets (
    id          uuid        CONSTRAINT secrets_pkey PRIMARY KEY,
    key_version integer     NOT NULL
                CONSTRAINT secrets_key_version_fkey REFERENCES master_keys (version),
    -- 96 random bits, fresh for every encryption.
    nonce       bytea       NOT NULL CONSTRAINT secrets_nonce_length CHECK (length(nonce) = 12),
    -- The ciphertext followed by the 16-byte GCM tag.
    ciphertext  bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Set when a rotation re-encrypted the value under a newer key version.
    rotated_at  timestamptz
);
-- A rotation walks the values still under older versions; the status counts them.
CREATE INDEX secrets_key_version ON secrets (key_version);

-- The master key versions each node holds (can decrypt), as it found them at start.
-- A rotation refuses while a live node lacks the version it would activate.
ALTER TABLE nodes ADD COLUMN key_versions integer[] NOT NULL DEFAULT '{}';
