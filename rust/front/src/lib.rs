//! tiergate's gRPC front door.
//!
//! HTTP/2, gRPC framing, deadlines' parsing, the health service and reflection run here, in Rust (tonic on a
//! one-thread tokio runtime of their own); what a call *means* stays in Python. A call to one of the
//! registered `tiergate.v1.Tiergate` methods becomes a [`Call`] pushed onto an [`EventQueue`], which wakes the
//! Python event loop through a socket it watches. Python answers through the call's [`Reply`]: one message
//! for a unary call, or messages into a bounded channel that the HTTP/2 stream drains for a streaming one.
//!
//! ```text
//!  client ──h2──▶ tonic (tokio thread) ──Event::Call──▶ EventQueue ──wake byte──▶ Python loop
//!                    ▲                                                             │
//!                    └──────────── Reply (oneshot / bounded mpsc) ◀────────────────┘
//! ```
//!
//! Why: relaying a streamed chunk through grpc.aio cost ~100 µs of CPU, most of it thread hand-offs inside
//! gRPC core (benches/results/profile_stream_relay.md). Here a chunk is one channel send from Python and
//! an HTTP/2 DATA frame written by the tokio thread, which batches whatever is queued when it runs.
//!
//! The tokio thread never takes the GIL: everything crossing over is plain Rust data.

mod auth;
mod call;
mod codec;
mod error;
mod events;
mod server;
mod service;

pub use call::{Call, MetaValue, Reply, Sent};
pub use error::{FrontError, ReplyError};
pub use events::{Event, EventQueue};
pub use server::{Front, FrontConfig, Tls};
pub use service::MethodKind;
