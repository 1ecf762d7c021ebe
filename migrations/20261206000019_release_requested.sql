-- What holds a deployment back can let it go while a node has just claimed it to ask
-- its gates (the last approval, a freeze window deleted): the task is running then, not
-- parked, so there is nothing to un-park. The release is noted on the task instead, and
-- the run's outcome then leaves it claimable rather than parked.
ALTER TABLE tasks ADD COLUMN release_requested boolean NOT NULL DEFAULT false;
