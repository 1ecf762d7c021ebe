-- A parked task waits in the queue for an operator (a deployment's question): no node
-- claims it until its kind's service un-parks it. It holds no slot meanwhile, and
-- still keeps its place and its concurrency key.
ALTER TABLE tasks ADD COLUMN parked boolean NOT NULL DEFAULT false;
