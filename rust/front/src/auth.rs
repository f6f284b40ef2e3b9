//! The bearer token (`listen.auth_token`): every service but health needs metadata
//! `authorization: Bearer <token>` (the scheme's case is free), else UNAUTHENTICATED before the request is
//! handed on. Health stays open for probes, which cannot send metadata.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

const DENIED: &str = "missing or wrong bearer token (metadata `authorization: Bearer <token>`)";

#[derive(Clone)]
pub(crate) struct BearerCheck {
    token: Arc<[u8]>,
}

impl BearerCheck {
    pub(crate) fn new(token: &str) -> Self {
        Self {
            token: Arc::from(token.as_bytes()),
        }
    }

    fn accepts(&self, authorization: &[u8]) -> bool {
        let text = authorization.trim_ascii();
        let Some(split) = text.iter().position(|&b| b == b' ') else {
            return false;
        };
        let (scheme, credentials) = text.split_at(split);
        scheme.eq_ignore_ascii_case(b"bearer") && same(credentials.trim_ascii(), &self.token)
    }
}

/// Compares in time that depends on the lengths only, not on where the bytes differ.
fn same(offered: &[u8], expected: &[u8]) -> bool {
    offered.len() == expected.len()
        && offered
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl Interceptor for BearerCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let offered = request
            .metadata()
            .get("authorization")
            .map(|value| value.as_encoded_bytes());
        if offered.is_some_and(|value| self.accepts(value)) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(DENIED))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_with_any_scheme_case_and_spacing() {
        let check = BearerCheck::new("s3cret");
        for good in ["Bearer s3cret", "bearer  s3cret ", "BEARER s3cret"] {
            assert!(check.accepts(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            "Bearer",
            "Bearer s3cre",
            "Bearer s3cret2",
            "Basic s3cret",
            "s3cret",
            "Bearer S3CRET",
        ] {
            assert!(!check.accepts(bad.as_bytes()), "{bad}");
        }
    }
}
