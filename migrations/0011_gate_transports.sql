-- One gate for every transport (issue 16): the tool-invocation log records
-- every authenticated call, whichever way it came — REST (`rest`), the tool
-- envelope `POST /v1/tools/{tool}` (`tool`, recorded as `http` before this
-- migration), MCP (`mcp`) and the pages' forms (`ui`).
--
-- Rows written before keep their `http`: the table is append-only (its
-- triggers refuse UPDATE), so they are not rewritten. The new CHECK is
-- NOT VALID: PostgreSQL enforces it on every row inserted from now on (no
-- new row can say `http`) without checking the rows already there. The
-- service reads an old `http` as `tool` (src/tools/log.rs), and the
-- `?transport=tool` filter finds both.
ALTER TABLE tool_invocations DROP CONSTRAINT tool_invocations_transport_check;
ALTER TABLE tool_invocations ADD CONSTRAINT tool_invocations_transport_check
    CHECK (transport IN ('rest', 'tool', 'mcp', 'ui')) NOT VALID;

-- `?transport=` lists one transport's calls in log order.
CREATE INDEX tool_invocations_transport ON tool_invocations (transport, position);
