//! Whole workflow files: TOML decoding, flow parsing, validation, planning
//! and rendering must never panic, whatever the bytes.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = kaon_model::load_str(Path::new("fuzz.toml"), text);
    let _ = loaded.diagnostics.render(&loaded.sources, false);
    let _ = loaded.diagnostics.render_short(&loaded.sources);
    if let Some(v) = loaded.result {
        let _ = v.plan.to_tree(&v.workflow.name);
        let _ = v.plan.to_dot(&v.workflow.name);
        let _ = v.plan.to_json();
    }
});
