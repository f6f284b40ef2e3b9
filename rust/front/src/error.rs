use thiserror::Error;

/// Why the front door could not start or stop.
#[derive(Debug, Error)]
pub enum FrontError {
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bad listen address {0:?} (expected HOST:PORT or unix:PATH)")]
    Address(String),
    #[error("cannot start the gRPC runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("bad TLS certificate or key: {0}")]
    Tls(#[source] tonic::transport::Error),
    #[error("the reflection service rejected the descriptors: {0}")]
    Reflection(String),
    #[error("the gRPC server failed: {0}")]
    Serve(#[source] tonic::transport::Error),
    #[error("the gRPC server thread panicked")]
    Panicked,
}

/// A handler used its call's reply wrongly (a bug in the Python handler, never the client's doing).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReplyError {
    #[error("the call was already finished")]
    Finished,
    #[error("a unary call is answered with finish_ok(message), not send()")]
    NotStreaming,
    #[error("a unary call must be finished with a message")]
    MissingMessage,
    #[error("a streaming call's messages go through send(); finish_ok takes none")]
    UnexpectedMessage,
    #[error("bad trailer {0:?}: keys are lowercase ASCII, values of keys ending in -bin are bytes, others visible ASCII")]
    Trailer(String),
}
