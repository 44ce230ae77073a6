//! The flow language alone: parsing never panics (nor overflows the stack),
//! and whatever parses prints in both notations to text that parses back to
//! the same model. Some inputs are shaped into long chains and deep nests
//! first (see `generate.rs`).
#![no_main]

mod generate;

use kaon_model::diag::StrMap;
use kaon_model::flow::{Notation, parse_flow, print_flow};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = match generate::input(data) {
        generate::Input::Raw(text) => text,
        generate::Input::Shaped(shaped) => shaped.flow,
    };
    let Ok(flow) = parse_flow(&text, &StrMap::identity()) else {
        return;
    };
    let model = flow.without_spans();
    for notation in [Notation::Operators, Notation::Verbs] {
        let printed = print_flow(&model, notation);
        let back = parse_flow(&printed, &StrMap::identity())
            .unwrap_or_else(|e| panic!("printed flow does not parse: {e:?}\n{printed}"));
        assert_eq!(back.without_spans(), model, "{printed}");
    }
});
