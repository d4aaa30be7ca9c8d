-- Fair scheduling, as store/sqlite/migrations/0012: the job's owner copied
-- onto it, an index per owner over its queued and its running jobs, and
-- job_owners, which remembers when each owner was last served and whose
-- row a claim locks to count the owner's running jobs exactly.
ALTER TABLE jobs ADD COLUMN owner_id uuid;
UPDATE jobs SET owner_id = d.owner_id FROM documents d WHERE d.id = jobs.document_id;
CREATE INDEX jobs_owner_queued ON jobs(owner_id, available_at) WHERE state = 'queued';
CREATE INDEX jobs_owner_running ON jobs(owner_id, lease_expires_at) WHERE state = 'running';

CREATE TABLE job_owners (
  owner_id uuid PRIMARY KEY,
  served   bigint NOT NULL DEFAULT 0
);
CREATE INDEX job_owners_served ON job_owners(served);
INSERT INTO job_owners (owner_id) SELECT DISTINCT owner_id FROM jobs WHERE owner_id IS NOT NULL;

-- During a rolling deploy, nodes still running the previous release enqueue
-- jobs without an owner: the trigger fills it in and makes sure the owner
-- has its row (which a claim may lock), so every job is claimable whoever
-- enqueued it. The row is looked for first (a plain read, which never
-- waits): only an owner's first job tries the insert, which could otherwise
-- wait for a claim that is updating the row.
CREATE FUNCTION jobs_fill_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.owner_id IS NULL THEN
    SELECT owner_id INTO NEW.owner_id FROM documents WHERE id = NEW.document_id;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM job_owners WHERE owner_id = NEW.owner_id) THEN
    INSERT INTO job_owners (owner_id) VALUES (NEW.owner_id) ON CONFLICT DO NOTHING;
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER jobs_fill_owner BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_fill_owner();
