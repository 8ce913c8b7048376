//! The client side of authentication: a bearer token attached to every call, and the client type every burst
//! program uses to talk to a controller.
//!
//! Tokens travel in the `authorization: Bearer <token>` header. Without a token nothing is attached, which a
//! controller without a tokens file accepts.

use tonic::Status;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::v1::controller_rpc_client::ControllerRpcClient;

/// The header a token travels in.
pub const AUTHORIZATION: &str = "authorization";

/// A controller client that sends its credentials with every call.
pub type ControlClient = ControllerRpcClient<InterceptedService<Channel, Bearer>>;

/// Attaches `authorization: Bearer <token>` to each request (nothing when there is no token).
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// A token as given (empty or absent: none). Refuses a token that cannot be a header value.
    pub fn new(token: Option<&str>) -> Result<Self, String> {
        match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(Bearer(None)),
            Some(t) => format!("Bearer {t}")
                .parse()
                .map(|v| Bearer(Some(v)))
                .map_err(|_| "the token holds characters a header cannot carry".to_string()),
        }
    }
}

impl std::fmt::Debug for Bearer {
    // Never print the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Bearer(<token>)" } else { "Bearer(none)" })
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert(AUTHORIZATION, v.clone());
        }
        Ok(req)
    }
}

/// A client over `channel` carrying `bearer`, with burst's message size limits.
pub fn control_client(channel: Channel, bearer: Bearer) -> ControlClient {
    ControllerRpcClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::MAX_MESSAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_sent_as_a_bearer_header_and_never_printed() {
        let mut b = Bearer::new(Some("s3cret")).unwrap();
        let req = b.call(tonic::Request::new(())).unwrap();
        assert_eq!(req.metadata().get(AUTHORIZATION).unwrap(), "Bearer s3cret");
        assert!(!format!("{b:?}").contains("s3cret"));
        let mut none = Bearer::new(Some("  ")).unwrap();
        assert!(none.call(tonic::Request::new(())).unwrap().metadata().get(AUTHORIZATION).is_none());
        assert!(Bearer::new(Some("bad\ntoken")).is_err());
    }
}
