-- The invocation log is written for every call on every transport (0011,
-- issue 16): each index on it is paid on every call. No query looks records
-- up by invocation id, and the transport filter of GET /v1/tool-invocations
-- walks the log in position order (the primary key) like every other
-- filter; these two indexes were only upkeep.
DROP INDEX IF EXISTS tool_invocations_invocation;
DROP INDEX IF EXISTS tool_invocations_transport;
