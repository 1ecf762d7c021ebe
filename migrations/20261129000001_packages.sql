-- The built-in package feed, task artifacts, and the bookkeeping that keeps the blob
-- store free of orphans: uploads in progress (cleaned up if their node dies) and blobs
-- that no row points to any more (deleted by housekeeping).

CREATE TABLE packages (
    package_id  text        NOT NULL,
    version     text        NOT NULL,
    -- Sorts as the version does (see capstan_core::PackageVersion::sort_key).
    sort_key    text        NOT NULL COLLATE "C",
    extension   text        NOT NULL,
    size        bigint      NOT NULL CHECK (size >= 0),
    sha256      text        NOT NULL,
    blob_key    text        NOT NULL UNIQUE,
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (package_id, version)
);
CREATE INDEX packages_newest_first ON packages (package_id, sort_key DESC);

CREATE TABLE task_artifacts (
    task_id    bigint      NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    name       text        NOT NULL,
    size       bigint      NOT NULL CHECK (size >= 0),
    sha256     text        NOT NULL,
    blob_key   text        NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, name)
);

CREATE TABLE blob_uploads (
    blob_key   text        PRIMARY KEY,
    -- The store's multipart upload id, when another node can abort it by id.
    upload_id  text,
    node_id    uuid        NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX blob_uploads_by_node ON blob_uploads (node_id);

CREATE TABLE blob_garbage (
    blob_key text        PRIMARY KEY,
    since    timestamptz NOT NULL DEFAULT now()
);

-- Whatever removes or replaces a row that points at a blob (a DELETE, a cascade from a
-- deleted task, a replaced package version) hands the blob to housekeeping in the same
-- transaction, so no path can orphan one.
CREATE FUNCTION blob_row_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.blob_key IS DISTINCT FROM NEW.blob_key THEN
        INSERT INTO blob_garbage (blob_key) VALUES (OLD.blob_key) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER packages_blob_gone AFTER DELETE OR UPDATE OF blob_key ON packages
    FOR EACH ROW EXECUTE FUNCTION blob_row_gone();
CREATE TRIGGER task_artifacts_blob_gone AFTER DELETE OR UPDATE OF blob_key ON task_artifacts
    FOR EACH ROW EXECUTE FUNCTION blob_row_gone();
