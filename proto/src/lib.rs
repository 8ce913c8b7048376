//! burst's wire contract: the `burst.v1` messages and services generated from `burst/v1/*.proto`, plus the few
//! conversions every side shares (state names, time stamps, addresses) and the shared config-file loader.
//!
//! No scheduling logic lives here: this crate is what the controller, the workers, the operator and the CLI
//! agree on, nothing more.

pub mod alloc;
pub mod auth;
pub mod config;
pub mod follow;
pub mod http;
pub mod json;
mod names;
pub mod telemetry;
pub mod testing;
pub mod tls;

pub use names::{MAX_POOL_NAME, ParseNameError, check_pool, parse_state, reason_name, state_name};

/// Generated code for package `burst.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("burst.v1");
    include!(concat!(env!("OUT_DIR"), "/burst.v1.serde.rs"));

    /// The encoded `FileDescriptorSet` of every burst.v1 file: what the HTTP API's OpenAPI document is made from.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/burst_descriptor.bin"));

    impl Lease {
        /// The reference that names this lease in reports: its job and epoch.
        pub fn to_ref(&self) -> LeaseRef {
            LeaseRef { job_id: self.job_id.clone(), epoch: self.epoch }
        }
    }
}

/// Largest gRPC message any burst program sends or accepts: a 10,000-spec batch of large specs fits; anything
/// bigger is a mistake or an attack, refused before it is decoded.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A job's priority is within -MAX_PRIORITY..=MAX_PRIORITY: room for a few levels between and around, not a
/// number to escalate without end.
pub const MAX_PRIORITY: i32 = 1000;

/// Milliseconds since the Unix epoch, the unit of every time stamp on the wire.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Resolves on SIGINT or SIGTERM: how every burst server is asked to stop.
pub async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

/// Turns `host:port` into `http://host:port`; leaves a URL with a scheme alone (see [`tls::url`] to set one).
pub fn endpoint_url(addr: &str) -> String {
    tls::url(addr, addr.starts_with("https://"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_get_an_http_scheme() {
        assert_eq!(endpoint_url("127.0.0.1:5"), "http://127.0.0.1:5");
        assert_eq!(endpoint_url("https://c:5"), "https://c:5");
    }
}
