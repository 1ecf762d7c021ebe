//! Masks arbitrary text with secrets cut from the input itself, and checks that
//! no secret survives.

#![no_main]

use capstan_core::variables::Masker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    // The first line lists secrets separated by `|`; the rest is the text to mask.
    let (secrets, text) = input.split_once('\n').unwrap_or((input, ""));
    let secrets: Vec<&str> = secrets.split('|').collect();
    let masked = Masker::new(&secrets).mask(text);
    for secret in secrets {
        // A secret containing `*` can be rebuilt from the mask and its neighbours.
        if !secret.is_empty() && !secret.contains('*') {
            assert!(
                !masked.contains(secret),
                "{secret:?} survives in {masked:?}"
            );
        }
    }
});
