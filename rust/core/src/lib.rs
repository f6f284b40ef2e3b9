//! tiergate's hot path, in pure Rust (no PyO3): everything here is thread-safe and callable without the GIL.
//!
//! - [`tokens`]: exact token counts for OpenAI's `o200k_base` and `cl100k_base`, without token vectors.
//! - [`rules`]: a compiled rule set (regex patterns and keyword lists) matched in one pass.
//! - [`breaker`]: per-model circuit breakers with resilience4j semantics.
//! - [`limits`]: token-bucket rate limits and budget counters.
//! - [`vectors`]: the nearest of a set of embedding vectors to a query (the response cache's semantic match).
//! - [`relay`]: a streamed answer's server-sent events in, plain text deltas straight out to the client.
//! - [`clock`]: the injectable time source the breaker and limits read.

pub mod breaker;
pub mod clock;
pub mod limits;
pub mod relay;
pub mod rules;
pub mod tokens;
pub mod vectors;
