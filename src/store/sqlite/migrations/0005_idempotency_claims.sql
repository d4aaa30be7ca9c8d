-- Each claim of an Idempotency-Key gets a token, so that only the request
-- holding the claim can record its answer or release it: a request that
-- outlived its claim (taken over by a retry) can no longer overwrite the
-- retry's. The answer to an upload is recorded in the transaction that
-- inserts the document, fenced by this token.
ALTER TABLE idempotency_keys ADD COLUMN claim TEXT;
