//! `crate::Error`: errors of setup and control (configuration, etcd values, files).
//!
//! Data-path refusals are not errors of this kind: they are [`crate::wire::Error`] and
//! [`crate::drop_reason::DropReason`], small `Copy` enums that map one-to-one onto drop counters.

/// A failure of configuration or control-plane input, with enough context for a
/// person to find and fix the offending field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of a configuration or lease value holds a value ringlay refuses.
    #[error("{field}: {value:?} is invalid: {expected}")]
    Invalid {
        /// The field's name as the user writes it (e.g. `Backend.Type`).
        field: String,
        /// The offending value, as given.
        value: String,
        /// What would be accepted instead.
        expected: String,
    },
    /// A JSON document could not be parsed at all.
    #[error("{what}: malformed JSON: {source}")]
    Json {
        /// What the document is (e.g. `network config`).
        what: &'static str,
        /// The parser's own message, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A document (e.g. an etcd value) is larger than ringlay accepts for its kind.
    #[error("{what}: {len} bytes is too large (at most {limit} bytes accepted)")]
    TooLarge {
        /// What the document is (e.g. `lease value`).
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The most ringlay accepts.
        limit: usize,
    },
    /// A document that must be JSON text holds bytes that are not UTF-8.
    #[error("{what}: not UTF-8 text (JSON must be UTF-8): {source}")]
    NotUtf8 {
        /// What the document is (e.g. `lease value`).
        what: &'static str,
        /// Where the first invalid byte is.
        #[source]
        source: std::str::Utf8Error,
    },
    /// A file could not be read, written, renamed or inspected.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The file (or directory) the operation was on.
        path: std::path::PathBuf,
        /// What was attempted, as a verb phrase (e.g. `read the static leases file`).
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Setting up the host failed (a TUN device, an address, a socket, a thread).
    #[error("{what}: {source}")]
    Setup {
        /// What was being set up, naming the device or address.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// ringlay lacks a privilege it needs; the message says which and how to grant it.
    #[error("{0}")]
    Privilege(String),
    /// No subnet in `[SubnetMin, SubnetMax]` is free to lease.
    #[error(
        "no free subnet: all {total} subnets /{len} from {min} to {max} (SubnetMin to SubnetMax) \
         are taken by {taken} leases; widen SubnetMin/SubnetMax in the network config, or \
         delete the leases of nodes that are gone"
    )]
    NoFreeSubnet {
        /// `SubnetMin`, the lowest subnet that may be leased.
        min: String,
        /// `SubnetMax`, the highest subnet that may be leased.
        max: String,
        /// `SubnetLen`.
        len: u8,
        /// How many subnets the range holds.
        total: u128,
        /// How many of them are leased.
        taken: u128,
    },
    /// An etcd request failed (unreachable, refused, timed out, denied).
    #[error("etcd: {what}: {source}")]
    Etcd {
        /// What was being done, naming the key or the endpoints.
        what: String,
        /// The client's error.
        #[source]
        source: Box<etcd_client::Error>,
    },
    /// A Kubernetes API request (or loading the client's configuration) failed.
    #[error("Kubernetes: {what}: {source}")]
    Kube {
        /// What was being done, naming the object or the file.
        what: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// This host's lease was taken by another node while we held it, so the subnet the
    /// data path forwards for is no longer ours.
    #[error(
        "our lease {key} was replaced by a lease of {holder}: this host no longer owns \
         {key}; restart ringlay to acquire a new subnet (containers on this host must then \
         be re-created with addresses from it)"
    )]
    LeaseTaken {
        /// The lease key that was ours.
        key: String,
        /// Who holds it now (its PublicIP).
        holder: String,
    },
    /// A file was read but its contents were refused; `source` names the field.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The file whose contents were refused.
        path: std::path::PathBuf,
        /// Why, naming the offending field.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// Builds an [`Error::Invalid`].
    pub fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            field: field.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

impl Error {
    /// Builds an [`Error::Setup`].
    pub fn setup(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Setup {
            what: what.into(),
            source,
        }
    }
}

impl Error {
    /// Builds an [`Error::Etcd`].
    pub fn etcd(what: impl Into<String>, source: etcd_client::Error) -> Self {
        Error::Etcd {
            what: what.into(),
            source: Box::new(source),
        }
    }
}

impl Error {
    /// Builds an [`Error::Kube`].
    pub fn kube(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Kube {
            what: what.into(),
            source: Box::new(source),
        }
    }
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
