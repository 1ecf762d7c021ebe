-- Lifecycle automation: a phase may be automatic (a release that completes the phases
-- before it is deployed to its environments without anyone asking) and may keep only
-- so many releases (the `release-retention` task deletes the rest).
ALTER TABLE lifecycle_phases
    ADD COLUMN automatic     boolean NOT NULL DEFAULT false,
    ADD COLUMN keep_releases integer CONSTRAINT lifecycle_phases_keep_releases_check
                             CHECK (keep_releases > 0),
    ADD COLUMN keep_days     integer CONSTRAINT lifecycle_phases_keep_days_check
                             CHECK (keep_days > 0),
    ADD CONSTRAINT lifecycle_phases_one_retention
        CHECK (keep_releases IS NULL OR keep_days IS NULL);

-- Why a deployment was queued when nobody asked for it, e.g.
-- {"kind": "lifecycle", "phase": "Test", "after_deployment": 12}.
ALTER TABLE deployments ADD COLUMN trigger jsonb;

-- A release is deployed automatically to an environment at most once, whichever node
-- recorded the success that let it in.
CREATE UNIQUE INDEX deployments_automatic_once ON deployments (release_id, environment_id)
    WHERE trigger ->> 'kind' = 'lifecycle';
