#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(t) = mesh_fuzz_targets::target("rls_response") {
        (t.run)(data);
    }
});
