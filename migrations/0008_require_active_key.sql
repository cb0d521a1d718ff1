-- A job command on a job whose state the process keeps (the job cache) may
-- skip the key lookup for a key the process has already resolved: its write
-- then calls this function in the same statement, so a revoked or unknown key
-- aborts the whole write (events, stream head, door row and answer) and a
-- revocation takes effect at its commit, as it does with the lookup. The
-- service answers such a write by looking the key up (401 if it is gone).
CREATE FUNCTION dispatch_require_active_key(hash text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM api_keys WHERE key_hash = hash AND revoked_at IS NULL) THEN
        RAISE EXCEPTION 'the API key is unknown or revoked' USING ERRCODE = 'DK401';
    END IF;
    RETURN true;
END
$$;
