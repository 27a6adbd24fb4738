//! What goes wrong with a policy: loading it, and an image it refuses.

use crate::files::FileError;
use crate::reference::ReferenceError;
use crate::registries::LocationProblem;
use crate::sigstore::SigstoreError;

/// Why a policy could not be loaded, or an image was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy or a key file cannot be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// Not JSON.
    #[error("{source_name}: {detail}")]
    Syntax {
        /// The policy file.
        source_name: String,
        /// What the parser said.
        detail: String,
    },
    /// A value that cannot work, e.g. `transports.docker "x": requirement 1: ...`.
    #[error("{source_name}: {place}: {reason}")]
    Invalid {
        /// The policy file.
        source_name: String,
        /// Where in the file.
        place: String,
        /// What is wrong.
        reason: PolicyProblem,
    },
    /// The image does not satisfy a requirement.
    #[error(
        "image {image}: rejected by policy {scope}, requirement {index} ({requirement}): {reason}"
    )]
    Rejected {
        /// The image.
        image: String,
        /// The scope that applied: `default` or `transports.docker "..."`.
        scope: String,
        /// Its position in the scope's list, from 1.
        index: usize,
        /// The requirement's type.
        requirement: String,
        /// Why it failed.
        reason: Rejection,
    },
}

/// What is wrong with a scope or a requirement of policy.json.
#[derive(Debug, thiserror::Error)]
pub enum PolicyProblem {
    /// A scope with no requirement.
    #[error("the requirement list is empty")]
    Empty,
    /// A `*.domain` scope whose domain is not a host.
    #[error("wildcard domain: {0}")]
    WildcardDomain(Box<LocationProblem>),
    /// A host scope that is not a registry host.
    #[error("{0}")]
    Host(&'static str),
    /// A scope that is not an image name.
    #[error(transparent)]
    Scope(Box<ReferenceError>),
    /// A scope written otherwise than normalised.
    #[error("write the scope normalised, as {0:?}")]
    NotNormalised(String),
    /// A requirement that is not a JSON object.
    #[error("must be an object")]
    NotObject,
    /// A requirement without a `type`.
    #[error("needs a string \"type\"")]
    NoType,
    /// A field the requirement does not have.
    #[error("{kind}: unknown field {field:?}")]
    UnknownField {
        /// The requirement's type.
        kind: String,
        /// The field.
        field: String,
    },
    /// A requirement type that does not exist.
    #[error("unknown requirement type {0:?}")]
    UnknownType(String),
    /// What is wrong with a `sigstoreSigned` requirement.
    #[error("sigstoreSigned: {0}")]
    Sigstore(Box<PolicyProblem>),
    /// JSON of the wrong shape.
    #[error("{0}")]
    Json(serde_json::Error),
    /// No key, or keys given more than one way.
    #[error("exactly one of keyPath, keyPaths, keyData and keyDatas must be set, and not empty")]
    KeyChoice,
    /// A key file that cannot be read.
    #[error("keyPath: {0}")]
    KeyRead(Box<PolicyError>),
    /// A key file that is not text.
    #[error("keyPath {0:?}: not a PEM file")]
    KeyNotPem(String),
    /// A key file that is not a P-256 public key.
    #[error("keyPath {path:?}: {source}")]
    KeyPath {
        /// The file.
        path: String,
        /// Why.
        source: Box<SigstoreError>,
    },
    /// `keyData` that is not base64 of text.
    #[error("keyData: not base64 of a PEM document")]
    KeyDataEncoding,
    /// `keyData` that is not a P-256 public key.
    #[error("keyData: {0}")]
    KeyData(Box<SigstoreError>),
    /// A `signedIdentity` of the wrong shape.
    #[error("signedIdentity: {0}")]
    Identity(serde_json::Error),
    /// A `signedIdentity` name that is not an image name.
    #[error("signedIdentity: {field}: {source}")]
    IdentityName {
        /// `dockerReference` or `dockerRepository`.
        field: &'static str,
        /// Why.
        source: Box<ReferenceError>,
    },
    /// `dockerReference` without tag or digest.
    #[error("signedIdentity: dockerReference {0:?} needs a tag or digest")]
    ReferenceWithoutTag(String),
    /// `dockerRepository` with a tag or digest.
    #[error("signedIdentity: dockerRepository {0:?} must not have a tag or digest")]
    RepositoryWithTag(String),
    /// A `remapIdentity` prefix that is not a location.
    #[error("signedIdentity: {field} {value:?}: {source}")]
    IdentityPrefix {
        /// `prefix` or `signedPrefix`.
        field: &'static str,
        /// The value.
        value: String,
        /// Why.
        source: Box<LocationProblem>,
    },
}

/// Why an image does not satisfy a requirement.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// The requirement is `reject`.
    #[error("the policy rejects this image")]
    Reject,
    /// A requirement crio-rs cannot check.
    #[error("{0}: refusing the image")]
    Unsupported(String),
    /// The manifest digest is not a digest.
    #[error("manifest digest {digest:?}: {reason}")]
    BadDigest {
        /// The digest.
        digest: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No signature is stored beside the image.
    #[error("no signature found (looked for tag {0:?} in the image's repository)")]
    NoSignature(String),
    /// No signature verifies: why each one failed, in order.
    #[error("{}", join_failures(.0))]
    Signatures(Vec<SignatureFailure>),
}

fn join_failures(failures: &[SignatureFailure]) -> String {
    let all: Vec<String> = failures
        .iter()
        .enumerate()
        .map(|(i, e)| format!("signature {}: {e}", i + 1))
        .collect();
    all.join("; ")
}

/// Why one signature does not cover the image.
#[derive(Debug, thiserror::Error)]
pub enum SignatureFailure {
    /// It does not verify with any key.
    #[error(transparent)]
    Verify(SigstoreError),
    /// It signs another manifest.
    #[error("signs manifest {signed}, not {wanted}")]
    OtherManifest {
        /// The manifest it signs.
        signed: String,
        /// The image's manifest.
        wanted: String,
    },
    /// The name it signs is not an image name.
    #[error("signed identity: {0}")]
    SignedName(ReferenceError),
    /// The name it signs is not one the policy accepts.
    #[error("signed for {signed:?}, the policy wants {wanted}")]
    Identity {
        /// The name it signs.
        signed: String,
        /// What the policy wants.
        wanted: String,
    },
    /// `remapIdentity` makes no valid name of the image's.
    #[error("remapIdentity: {0}")]
    Remap(ReferenceError),
}
