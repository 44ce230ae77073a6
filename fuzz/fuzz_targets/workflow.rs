//! Whole workflow files: TOML decoding, flow parsing, validation, planning,
//! printing, rendering and the engine's compilation must never panic (nor
//! overflow the stack), whatever the bytes. Some inputs are shaped into
//! long chains and deep nests first (see `generate.rs`).
#![no_main]

mod generate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kaon_engine::Program;
use kaon_model::diag::StrMap;
use kaon_model::flow::{Notation, parse_flow, print_flow};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = match generate::input(data) {
        generate::Input::Raw(text) => text,
        generate::Input::Shaped(shaped) => generate::workflow(&shaped),
    };
    let loaded = kaon_model::load_str(Path::new("fuzz.toml"), &text);
    let _ = loaded.diagnostics.render(&loaded.sources, false);
    let _ = loaded.diagnostics.render_short(&loaded.sources);
    if let Some(v) = loaded.result {
        let _ = v.plan.to_tree(&v.workflow.name);
        let _ = v.plan.to_dot(&v.workflow.name);
        let _ = v.plan.to_json();
        // `kaon fmt`: whatever validates prints to text that parses back.
        let model = v.workflow.flow.without_spans();
        for notation in [Notation::Operators, Notation::Verbs] {
            let printed = print_flow(&model, notation);
            let back = parse_flow(&printed, &StrMap::identity())
                .unwrap_or_else(|e| panic!("printed flow does not parse: {e:?}\n{printed}"));
            assert!(back.without_spans() == model, "{printed}");
        }
        let program = Program::new(Arc::new(v), PathBuf::from("/nonexistent"));
        assert!(!program.tmpls.is_empty());
    }
});
