//! Node addresses: the only way pvce names a libvirt host to connect to.
//!
//! Why typed. A libvirt URI is a small program: its query parameters name the
//! program the ssh transport runs (`command`, `netcat`), the socket it opens
//! (`socket`), key files, proxies and the known-hosts policy. An admin (or
//! anyone who got an admin's session) who could store such a URI made pvce's
//! root run any program every few seconds. So a node is a [`NodeAddress`]:
//! a transport, a host (DNS name or IP literal), an optional port and, for
//! ssh, a login name; [`NodeAddress::to_uri`] builds the URI from those
//! fields and nothing else, and [`super::Node::open`] accepts only this type.
//! A URI string is accepted only through the strict parser
//! [`NodeAddress::parse`], which refuses every query parameter, every path
//! but the driver's standard one, user info outside ssh, and anything that
//! is not a plain host name or IP literal. A stored URI that does not parse
//! (a database from before this check) can therefore never be opened.
//!
//! Trust: `tls` relies on libvirt's CA and client certificate, `ssh` on the
//! server's known_hosts (pvce never sets `no_verify`); `tcp` (no
//! authentication, no encryption) and libvirt's `test:///default` driver are
//! accepted only when the server was started to allow them
//! ([`AddressPolicy`]: `--allow-tcp-nodes`, `--allow-test-nodes`), for test
//! rigs.
//!
//! Invariant: `NodeAddress::parse(&a.to_uri(), p) == Ok(a)` for every address
//! `a` the policy `p` allows (the stored `uri` is canonical: lower-case host,
//! brackets around IPv6, no default port spelled out unless given).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Longest URI accepted (a host name is at most 253 characters).
const MAX_URI: usize = 512;
/// Longest login name accepted (useradd's limit).
const MAX_USER: usize = 32;

/// How pvce reaches a node's libvirtd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The QEMU driver of the libvirtd on pvce's own host (`qemu:///system`).
    Local,
    /// The Xen (libxl) driver on pvce's own host (`xen:///system`).
    Xen,
    /// TLS with libvirt's certificates (`qemu+tls://host[:port]/system`).
    Tls,
    /// ssh as `user` (`qemu+ssh://[user@]host[:port]/system`).
    Ssh,
    /// Plain TCP, no authentication: test rigs only (`qemu+tcp://…`).
    Tcp,
    /// libvirt's in-process test driver (`test:///default`): tests only.
    Test,
}

impl Transport {
    /// Every transport, in the order the API documents them.
    pub const ALL: [Transport; 6] = [
        Self::Local,
        Self::Xen,
        Self::Tls,
        Self::Ssh,
        Self::Tcp,
        Self::Test,
    ];

    /// Its name in the API (`"tls"`, `"ssh"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Xen => "xen",
            Self::Tls => "tls",
            Self::Ssh => "ssh",
            Self::Tcp => "tcp",
            Self::Test => "test",
        }
    }

    /// The transport by its API name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    fn scheme(self) -> &'static str {
        match self {
            Self::Local => "qemu",
            Self::Xen => "xen",
            Self::Tls => "qemu+tls",
            Self::Ssh => "qemu+ssh",
            Self::Tcp => "qemu+tcp",
            Self::Test => "test",
        }
    }

    fn from_scheme(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.scheme() == s)
    }

    /// The one path libvirt's driver is reached at.
    fn path(self) -> &'static str {
        match self {
            Self::Test => "/default",
            _ => "/system",
        }
    }

    /// Whether the driver is on another host (and so needs one).
    pub fn is_remote(self) -> bool {
        matches!(self, Self::Tls | Self::Ssh | Self::Tcp)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of the unsafe-by-design transports the server accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// `qemu+tcp://`: unauthenticated and unencrypted, for test rigs.
    pub allow_tcp: bool,
    /// `test:///default`: libvirt's fake driver, for tests.
    pub allow_test: bool,
}

impl AddressPolicy {
    /// Everything allowed (tests of the libvirt module itself).
    pub const TESTING: AddressPolicy = AddressPolicy {
        allow_tcp: true,
        allow_test: true,
    };

    /// The transports this policy accepts, in [`Transport::ALL`] order.
    pub fn transports(self) -> Vec<Transport> {
        Transport::ALL
            .into_iter()
            .filter(|t| self.allows(*t))
            .collect()
    }

    fn allows(self, t: Transport) -> bool {
        match t {
            Transport::Tcp => self.allow_tcp,
            Transport::Test => self.allow_test,
            _ => true,
        }
    }
}

/// Why an address was refused; the message names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the URI is longer than {MAX_URI} characters")]
    TooLong,
    #[error("the URI may only contain printable ASCII without spaces")]
    BadCharacters,
    #[error(
        "unsupported URI scheme {0:?}: use qemu+tls://HOST/system, qemu+ssh://USER@HOST/system, qemu:///system or xen:///system"
    )]
    Scheme(String),
    #[error(
        "query parameters are not allowed ({0}): they can name programs, sockets, key files or proxies; pvce sets every connection option itself"
    )]
    Query(String),
    #[error("a URI fragment ('#…') is not allowed")]
    Fragment,
    #[error("the path must be {expected:?}, not {got:?}")]
    Path { expected: &'static str, got: String },
    #[error("{0} names a driver on this host and takes no host, port or user")]
    LocalWithHost(Transport),
    #[error("a {0} node needs a host")]
    MissingHost(Transport),
    #[error("host {0:?} is not a DNS name or an IP address")]
    Host(String),
    #[error("user {0:?} is not a plain login name (letters, digits, '.', '_', '-'; at most 32)")]
    User(String),
    #[error("only ssh addresses carry a user")]
    UserNotAllowed,
    #[error("port {0:?} is not a number from 1 to 65535")]
    Port(String),
    #[error("unknown transport {0:?}: use tls, ssh, tcp (test rigs), local or xen")]
    UnknownTransport(String),
    #[error(
        "qemu+tcp:// nodes (no authentication, no encryption) are refused unless the server runs with --allow-tcp-nodes (test rigs only)"
    )]
    TcpNotAllowed,
    #[error(
        "test:/// nodes (libvirt's fake driver) are refused unless the server runs with --allow-test-nodes (tests only)"
    )]
    TestNotAllowed,
}

/// A host: a lower-case DNS name or an IP literal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::V4(a) => write!(f, "{a}"),
            Self::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A libvirt host pvce may connect to; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    transport: Transport,
    host: Option<Host>,
    port: Option<u16>,
    user: Option<String>,
}

impl NodeAddress {
    /// The address of a libvirt URI, refusing anything but the plain forms
    /// of the module docs and transports `policy` does not allow.
    pub fn parse(uri: &str, policy: AddressPolicy) -> Result<Self, AddressError> {
        if uri.len() > MAX_URI {
            return Err(AddressError::TooLong);
        }
        if !uri.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AddressError::BadCharacters);
        }
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(AddressError::Scheme(uri.chars().take(32).collect()));
        };
        let transport =
            Transport::from_scheme(scheme).ok_or_else(|| AddressError::Scheme(scheme.into()))?;
        // Refuse the query before anything else: it is the dangerous part,
        // and naming its parameters tells the admin exactly what to drop.
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        if let Some(q) = query {
            let names: Vec<&str> = q
                .split('&')
                .map(|p| p.split_once('=').map_or(p, |(k, _)| k))
                .filter(|k| !k.is_empty())
                .collect();
            let names = if names.is_empty() {
                "an empty '?'".to_owned()
            } else {
                names.join(", ")
            };
            return Err(AddressError::Query(names));
        }
        if rest.contains('#') {
            return Err(AddressError::Fragment);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if path != transport.path() {
            return Err(AddressError::Path {
                expected: transport.path(),
                got: path.into(),
            });
        }
        if !transport.is_remote() {
            if !authority.is_empty() {
                return Err(AddressError::LocalWithHost(transport));
            }
            return Self::checked(transport, None, None, None, policy);
        }
        let (user, hostport) = match authority.split_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport)?;
        Self::checked(transport, Some(host), port, user, policy)
    }

    /// The address of the structured form (`transport`, `host`, `port`,
    /// `user`); `host` may be an IPv6 literal with or without brackets.
    pub fn from_parts(
        transport: &str,
        host: Option<&str>,
        port: Option<i64>,
        user: Option<&str>,
        policy: AddressPolicy,
    ) -> Result<Self, AddressError> {
        let transport = Transport::parse(transport)
            .ok_or_else(|| AddressError::UnknownTransport(transport.chars().take(32).collect()))?;
        let port = port
            .map(|p| {
                u16::try_from(p)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| AddressError::Port(p.to_string()))
            })
            .transpose()?;
        if !transport.is_remote() && (host.is_some() || port.is_some() || user.is_some()) {
            return Err(AddressError::LocalWithHost(transport));
        }
        let host = host.map(|h| {
            h.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(h)
        });
        Self::checked(transport, host, port, user, policy)
    }

    /// Validates the parts (`host` without brackets) and the policy.
    fn checked(
        transport: Transport,
        host: Option<&str>,
        port: Option<u16>,
        user: Option<&str>,
        policy: AddressPolicy,
    ) -> Result<Self, AddressError> {
        let host = match (transport.is_remote(), host) {
            (true, None | Some("")) => return Err(AddressError::MissingHost(transport)),
            (true, Some(h)) => Some(parse_host(h)?),
            (false, _) => None,
        };
        let user = match user {
            None => None,
            Some(_) if transport != Transport::Ssh => return Err(AddressError::UserNotAllowed),
            Some(u) if is_login_name(u) => Some(u.to_owned()),
            Some(u) => return Err(AddressError::User(u.chars().take(40).collect())),
        };
        if !policy.allows(transport) {
            return Err(match transport {
                Transport::Tcp => AddressError::TcpNotAllowed,
                _ => AddressError::TestNotAllowed,
            });
        }
        Ok(Self {
            transport,
            host,
            port,
            user,
        })
    }

    /// The canonical libvirt URI of this address.
    pub fn to_uri(&self) -> String {
        let mut uri = format!("{}://", self.transport.scheme());
        if let Some(u) = &self.user {
            uri.push_str(u);
            uri.push('@');
        }
        if let Some(h) = &self.host {
            uri.push_str(&h.to_string());
        }
        if let Some(p) = self.port {
            uri.push_str(&format!(":{p}"));
        }
        uri.push_str(self.transport.path());
        uri
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The host as written in the URI (IPv6 in brackets); `None` for local drivers.
    pub fn host(&self) -> Option<String> {
        self.host.as_ref().map(ToString::to_string)
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

/// `host[:port]` or `[v6][:port]` → (host without brackets, port).
fn split_host_port(s: &str) -> Result<(&str, Option<u16>), AddressError> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| AddressError::Host(s.into()))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| AddressError::Host(s.into()))?,
                ),
            ),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = port.map(parse_port).transpose()?;
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, AddressError> {
    // Digits only: `u16::from_str` would take a leading '+'.
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::Port(p.into()));
    }
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(AddressError::Port(p.into())),
    }
}

/// A DNS name (RFC 1123 labels) or an IP literal; zones (`%eth0`) refused.
fn parse_host(h: &str) -> Result<Host, AddressError> {
    let bad = || AddressError::Host(h.chars().take(64).collect());
    if let Ok(a) = h.parse::<Ipv4Addr>() {
        return Ok(Host::V4(a));
    }
    if let Ok(a) = h.parse::<Ipv6Addr>() {
        return Ok(Host::V6(a));
    }
    let name = h.to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    // A numeric last label is no DNS name but something the resolver would
    // read as a shortened IPv4 address ("10.1" = 10.0.0.1): refused, so that
    // what the admin sees is what is dialled.
    let numeric_tld = name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if name.len() > 253 || numeric_tld || !name.split('.').all(label_ok) {
        return Err(bad());
    }
    Ok(Host::Name(name))
}

/// A plain login name: what `useradd` accepts by default, no shell or URI
/// metacharacters (`;`, `@`, `:`, `%`, spaces).
fn is_login_name(u: &str) -> bool {
    let mut bytes = u.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    first_ok
        && u.len() <= MAX_USER
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STRICT: AddressPolicy = AddressPolicy {
        allow_tcp: false,
        allow_test: false,
    };

    fn ok(uri: &str) -> NodeAddress {
        NodeAddress::parse(uri, AddressPolicy::TESTING).unwrap_or_else(|e| panic!("{uri}: {e}"))
    }

    fn refused(uri: &str, policy: AddressPolicy) -> AddressError {
        match NodeAddress::parse(uri, policy) {
            Ok(a) => panic!("{uri} accepted as {a:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_documented_forms_parse_and_stay_canonical() {
        for uri in [
            "qemu:///system",
            "xen:///system",
            "qemu+tls://lab-07.example.edu/system",
            "qemu+tls://lab-07.example.edu:16514/system",
            "qemu+ssh://root@10.0.0.7/system",
            "qemu+ssh://pvce.admin@host-1:2222/system",
            "qemu+ssh://10.0.0.7/system",
            "qemu+tcp://10.77.1.2/system",
            "qemu+tls://[fe80::1]:16514/system",
            "test:///default",
        ] {
            assert_eq!(ok(uri).to_uri(), uri);
        }
        // Host names are case-insensitive; the stored form is lower case.
        assert_eq!(
            ok("qemu+tls://Lab-07.Example.EDU/system").to_uri(),
            "qemu+tls://lab-07.example.edu/system"
        );
        let a = ok("qemu+ssh://root@[::1]:22/system");
        assert_eq!(a.transport(), Transport::Ssh);
        assert_eq!(a.host().as_deref(), Some("[::1]"));
        assert_eq!(a.port(), Some(22));
        assert_eq!(a.user(), Some("root"));
    }

    #[test]
    fn query_parameters_are_refused_by_name() {
        for (uri, names) in [
            (
                "qemu+ssh://x@127.0.0.1/system?command=/tmp/evil.sh",
                "command",
            ),
            ("qemu:///system?socket=/etc/passwd", "socket"),
            ("qemu+ssh://h/system?netcat=/tmp/nc", "netcat"),
            (
                "qemu+ssh://h/system?keyfile=/root/.ssh/x&no_verify=1",
                "keyfile, no_verify",
            ),
            ("qemu+ssh://h/system?proxy=native", "proxy"),
            ("qemu+tls://h/system?pkipath=/tmp", "pkipath"),
            ("qemu+ssh://h/system?known_hosts=/dev/null", "known_hosts"),
            ("qemu:///system?mode=legacy", "mode"),
            ("qemu+tls://h/system?", "an empty '?'"),
        ] {
            assert_eq!(
                refused(uri, AddressPolicy::TESTING),
                AddressError::Query(names.into()),
                "{uri}"
            );
        }
    }

    #[test]
    fn everything_but_plain_hosts_users_ports_and_paths_is_refused() {
        use AddressError as E;
        let p = AddressPolicy::TESTING;
        type Is = fn(&AddressError) -> bool;
        let cases: &[(&str, Is)] = &[
            ("file:///etc/passwd", |e| matches!(e, E::Scheme(_))),
            ("bogus://", |e| matches!(e, E::Scheme(_))),
            ("qemu+unix:///system", |e| matches!(e, E::Scheme(_))),
            ("qemu+ext:///system", |e| matches!(e, E::Scheme(_))),
            ("qemu+libssh2://h/system", |e| matches!(e, E::Scheme(_))),
            ("qemu://h/system", |e| matches!(e, E::LocalWithHost(_))),
            ("qemu:///session", |e| matches!(e, E::Path { .. })),
            ("test:///etc/libvirt/evil.xml", |e| {
                matches!(e, E::Path { .. })
            }),
            ("qemu+tls://h", |e| matches!(e, E::Path { .. })),
            ("qemu+tls://h/system/", |e| matches!(e, E::Path { .. })),
            ("qemu+tls://h/system#x", |e| matches!(e, E::Fragment)),
            ("qemu+tls:///system", |e| matches!(e, E::MissingHost(_))),
            ("qemu+ssh://h;id/system", |e| matches!(e, E::Host(_))),
            ("qemu+ssh://-oProxyCommand=x/system", |e| {
                matches!(e, E::Host(_))
            }),
            ("qemu+ssh://h%2Fx/system", |e| matches!(e, E::Host(_))),
            ("qemu+ssh://10.1/system", |e| matches!(e, E::Host(_))),
            ("qemu+ssh://[fe80::1%eth0]/system", |e| {
                matches!(e, E::Host(_))
            }),
            ("qemu+ssh://a;id@h/system", |e| matches!(e, E::User(_))),
            ("qemu+ssh://a:pw@h/system", |e| matches!(e, E::User(_))),
            ("qemu+ssh://a@b@h/system", |e| matches!(e, E::Host(_))),
            ("qemu+ssh://-l@h/system", |e| matches!(e, E::User(_))),
            ("qemu+tls://root@h/system", |e| {
                matches!(e, E::UserNotAllowed)
            }),
            ("qemu+tls://h:0/system", |e| matches!(e, E::Port(_))),
            ("qemu+tls://h:65536/system", |e| matches!(e, E::Port(_))),
            ("qemu+tls://h:+22/system", |e| matches!(e, E::Port(_))),
            ("qemu+tls://h:/system", |e| matches!(e, E::Port(_))),
            ("qemu+tls://h /system", |e| matches!(e, E::BadCharacters)),
            ("qemu+tls://h\n/system", |e| matches!(e, E::BadCharacters)),
            ("qemu+tls://hé/system", |e| matches!(e, E::BadCharacters)),
        ];
        for (uri, want) in cases {
            let e = refused(uri, p);
            assert!(want(&e), "{uri}: {e:?}");
        }
        assert_eq!(
            refused(&format!("qemu+tls://{}/system", "a".repeat(600)), p),
            E::TooLong
        );
        // A host with a path or query inside it never reaches libvirt.
        assert!(matches!(
            NodeAddress::from_parts("tls", Some("h/system?socket=/x"), None, None, p),
            Err(E::Host(_))
        ));
    }

    #[test]
    fn tcp_and_test_need_the_server_to_allow_them() {
        assert_eq!(
            refused("qemu+tcp://10.77.1.2/system", STRICT),
            AddressError::TcpNotAllowed
        );
        assert_eq!(
            refused("test:///default", STRICT),
            AddressError::TestNotAllowed
        );
        let tcp_only = AddressPolicy {
            allow_tcp: true,
            allow_test: false,
        };
        assert!(NodeAddress::parse("qemu+tcp://10.77.1.2/system", tcp_only).is_ok());
        assert_eq!(
            refused("test:///default", tcp_only),
            AddressError::TestNotAllowed
        );
        assert_eq!(
            STRICT.transports(),
            [
                Transport::Local,
                Transport::Xen,
                Transport::Tls,
                Transport::Ssh
            ]
        );
        assert!(
            AddressPolicy::TESTING
                .transports()
                .contains(&Transport::Test)
        );
    }

    #[test]
    fn structured_parts_build_the_same_addresses() {
        let p = AddressPolicy::TESTING;
        let a = NodeAddress::from_parts(
            "ssh",
            Some("Lab-07.example.edu"),
            Some(2222),
            Some("root"),
            p,
        )
        .expect("ssh");
        assert_eq!(a.to_uri(), "qemu+ssh://root@lab-07.example.edu:2222/system");
        let v6 = NodeAddress::from_parts("tls", Some("fe80::1"), None, None, p).expect("v6");
        assert_eq!(v6.to_uri(), "qemu+tls://[fe80::1]/system");
        assert_eq!(
            NodeAddress::from_parts("tls", Some("[fe80::1]"), None, None, p),
            Ok(v6)
        );
        assert_eq!(
            NodeAddress::from_parts("local", None, None, None, p).map(|a| a.to_uri()),
            Ok("qemu:///system".into())
        );
        assert_eq!(
            NodeAddress::from_parts("local", Some("h"), None, None, p),
            Err(AddressError::LocalWithHost(Transport::Local))
        );
        assert_eq!(
            NodeAddress::from_parts("tls", None, None, None, p),
            Err(AddressError::MissingHost(Transport::Tls))
        );
        assert_eq!(
            NodeAddress::from_parts("tls", Some("h"), Some(70000), None, p),
            Err(AddressError::Port("70000".into()))
        );
        assert_eq!(
            NodeAddress::from_parts("tls", Some("h"), Some(0), None, p),
            Err(AddressError::Port("0".into()))
        );
        assert!(matches!(
            NodeAddress::from_parts("ssh", Some("h"), None, Some("a;reboot"), p),
            Err(AddressError::User(_))
        ));
        assert!(matches!(
            NodeAddress::from_parts("unix", None, None, None, p),
            Err(AddressError::UnknownTransport(_))
        ));
        assert_eq!(
            NodeAddress::from_parts("tcp", Some("h"), None, None, STRICT),
            Err(AddressError::TcpNotAllowed)
        );
    }

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z][a-z0-9-]{0,10}[a-z0-9](\\.[a-z][a-z0-9]{0,8}){0,3}",
            any::<[u8; 4]>().prop_map(|b| Ipv4Addr::from(b).to_string()),
            any::<[u16; 8]>().prop_map(|b| Ipv6Addr::from(b).to_string()),
        ]
    }

    proptest! {
        #[test]
        fn good_addresses_round_trip(
            t in prop_oneof![Just("tls"), Just("ssh"), Just("tcp")],
            host in host(),
            port in proptest::option::of(1i64..=65535),
            user in proptest::option::of("[a-z_][a-z0-9._-]{0,31}"),
        ) {
            let user = if t == "ssh" { user } else { None };
            let p = AddressPolicy::TESTING;
            let a = NodeAddress::from_parts(t, Some(&host), port, user.as_deref(), p)
                .expect("valid parts");
            let uri = a.to_uri();
            prop_assert_eq!(NodeAddress::parse(&uri, p), Ok(a));
            prop_assert!(!uri.contains('?'));
        }

        #[test]
        fn no_accepted_uri_carries_a_query_or_odd_characters(s in "\\PC{0,80}") {
            // Arbitrary text never panics, and whatever is accepted is exactly
            // its canonical form's address with none of the dangerous parts.
            if let Ok(a) = NodeAddress::parse(&s, AddressPolicy::TESTING) {
                let uri = a.to_uri();
                prop_assert!(!uri.contains('?') && !uri.contains('#') && !uri.contains(';'));
                prop_assert!(!uri.contains('%') && !uri.contains(' '));
                prop_assert_eq!(NodeAddress::parse(&uri, AddressPolicy::TESTING), Ok(a));
            }
        }

        #[test]
        fn a_query_is_always_refused(
            base in prop_oneof![Just("qemu:///system"), Just("qemu+ssh://root@h/system"), Just("qemu+tls://h:1/system")],
            q in "[a-z_]{1,12}=[ -~]{0,20}",
        ) {
            let uri = format!("{base}?{q}");
            let refused_query = matches!(
                NodeAddress::parse(&uri, AddressPolicy::TESTING),
                Err(AddressError::Query(_) | AddressError::BadCharacters)
            );
            prop_assert!(refused_query);
        }
    }
}
