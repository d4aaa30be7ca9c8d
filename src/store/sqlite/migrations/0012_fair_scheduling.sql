-- Fair scheduling: claims go round-robin over the owners that have a job
-- available, so one user's burst cannot delay another user's document by
-- the whole burst. The owner is copied onto the job so that a claim can
-- find each owner's oldest job, and its running jobs, through an index of
-- its own instead of reading the queue; job_owners remembers when each
-- owner was last served. Only additions: a binary without this migration's
-- code never reads them.
ALTER TABLE jobs ADD COLUMN owner_id TEXT;
UPDATE jobs SET owner_id = (SELECT owner_id FROM documents WHERE documents.id = jobs.document_id);
CREATE INDEX jobs_owner_queued ON jobs(owner_id, available_at) WHERE state = 'queued';
CREATE INDEX jobs_owner_running ON jobs(owner_id, lease_expires_at) WHERE state = 'running';

-- served: the claim counter's value when one of the owner's jobs was last
-- claimed (0: never); the owner with the lowest goes next.
CREATE TABLE job_owners (
  owner_id TEXT PRIMARY KEY,
  served   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX job_owners_served ON job_owners(served);
INSERT INTO job_owners (owner_id) SELECT DISTINCT owner_id FROM jobs WHERE owner_id IS NOT NULL;
