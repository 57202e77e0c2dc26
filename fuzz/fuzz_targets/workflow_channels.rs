#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| twofa_tests::fuzz::workflow_channels(data));
