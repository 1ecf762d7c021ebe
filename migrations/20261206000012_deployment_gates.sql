-- A deployment that may not start yet (it waits for approvals, a freeze window to end,
-- or the time it was scheduled for) waits parked in the queue: `parked_until` lets a
-- node claim it again once that time has come (NULL: only its service un-parks it),
-- and `deployments.held` says, as the API words it, what holds it back.
ALTER TABLE tasks ADD COLUMN parked_until timestamptz;
ALTER TABLE deployments ADD COLUMN held jsonb;
