//! The tool decoder: a tool call (HTTP envelope or MCP arguments) through the
//! allowlist and the tool's input schema to its command. The body of the
//! target is `dispatch_api_fuzz::tool_decoder`, shared with `tests/hostile/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dispatch_api_fuzz::tool_decoder(data);
});
