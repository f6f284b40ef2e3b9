//! Token counts of arbitrary text equal tiktoken's, in both encodings.
//!
//! The reference is tiktoken's own Rust core as tiktoken-rs vendors it (fancy-regex with tiktoken 0.14's
//! split patterns, OpenAI's vocabularies), counting `encode_ordinary`. Arbitrary bytes become text the way
//! a caller's bytes would (invalid UTF-8 replaced by U+FFFD). Long runs from the fuzzer reach the heap merge
//! for pieces over 64 bytes as well as the stack merge, so both merge paths meet the reference.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tiergate_core::tokens::{count_tokens, Encoding};
use tiktoken_rs::CoreBPE;

fn reference(encoding: Encoding) -> &'static CoreBPE {
    static O200K: OnceLock<CoreBPE> = OnceLock::new();
    static CL100K: OnceLock<CoreBPE> = OnceLock::new();
    match encoding {
        Encoding::O200kBase => {
            O200K.get_or_init(|| tiktoken_rs::o200k_base().expect("o200k_base loads"))
        }
        Encoding::Cl100kBase => {
            CL100K.get_or_init(|| tiktoken_rs::cl100k_base().expect("cl100k_base loads"))
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for encoding in Encoding::ALL {
        let ours = count_tokens(&text, encoding).expect("the embedded encodings load");
        let theirs = reference(encoding).encode_ordinary(&text).len();
        assert_eq!(ours, theirs, "{encoding}: {text:?}");
        assert!(
            ours <= text.len(),
            "more tokens than bytes: {ours} for {text:?}"
        );
    }
});
