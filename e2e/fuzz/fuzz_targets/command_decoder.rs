//! The command decoder: an HTTP command body (with its command name and
//! `Content-Type`) to the typed domain command. The body of the target is
//! `dispatch_api_fuzz::command_decoder`, shared with `tests/hostile/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dispatch_api_fuzz::command_decoder(data);
});
