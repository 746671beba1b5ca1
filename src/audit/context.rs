//! Where a request came from, for the entries recorded while serving it.
//!
//! The HTTP layer learns the client's address (the peer, or behind a
//! trusted proxy the last `X-Forwarded-For` entry, see
//! `http::extract::client_ip`) and runs the request's handler inside
//! [`scope`]; a domain service recording an entry reads it with
//! [`client_ip`]. That keeps "from where" out of every service's signature.
//! Work outside a request (background loops, the CLI) has no address, and
//! its entries say so (`ip: null`).

use std::future::Future;
use std::net::IpAddr;

tokio::task_local! {
    static CLIENT_IP: IpAddr;
}

/// Runs `fut` (one request's handling) with `ip` as its client address.
pub async fn scope<F: Future>(ip: IpAddr, fut: F) -> F::Output {
    CLIENT_IP.scope(ip, fut).await
}

/// The client address of the request being served, if any.
pub fn client_ip() -> Option<IpAddr> {
    CLIENT_IP.try_with(|ip| *ip).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn inside_a_scope_the_address_is_known_outside_it_is_not() {
        assert_eq!(client_ip(), None);
        let ip: IpAddr = "192.0.2.7".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(scope(ip, async { client_ip() }).await, Some(ip));
        assert_eq!(client_ip(), None);
    }
}
