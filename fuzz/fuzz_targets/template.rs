//! Parses and renders arbitrary text against variables that refer to each other,
//! to themselves and to names that do not exist. Any panic, stack overflow or
//! runaway allocation is a bug.

#![no_main]

use capstan_core::variables::{Template, VariableMap, is_truthy};
use libfuzzer_sys::fuzz_target;

fn vars() -> VariableMap {
    [
        ("A", "#{B}"),
        ("B", "#{if A}x#{/if}"),
        ("C", "c"),
        ("A[c]", "#{C}"),
        ("Loop", "#{Loop}"),
        ("Twice", "#{C}#{C}#{Twice2}"),
        ("Twice2", "#{C}#{C}"),
        ("Flag", "False"),
        ("Broken", "#{if"),
        ("Missing", "#{Nowhere}"),
        ("Capstan.Machine.Name", "web01"),
        (
            "Capstan.Action[Deploy].Output[web01].Ok",
            "#{if Flag}no#{else}True#{/if}",
        ),
    ]
    .into_iter()
    .collect()
}

fuzz_target!(|text: &str| {
    let Ok(template) = Template::parse(text) else {
        return;
    };
    let _ = template.references();
    if let Ok(rendered) = template.render(&vars()) {
        let _ = is_truthy(&rendered);
    }
});
