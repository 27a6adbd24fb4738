//! The daemon core's errors. Pods, containers, images and shims return
//! these; `cri::status` turns them into gRPC status codes at the edge.

use std::sync::Arc;

use crate::shim::{ShimError, TaskError};

/// What a daemon operation failed with. Cloneable: the outcome of a create
/// or a pull is shared with the retries that wait for it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A request field is missing or wrong.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field, as the CRI names it (`config.metadata.name`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request cannot be carried out as asked (a spec that cannot be
    /// built, a bad stop signal).
    #[error("{0}")]
    Invalid(String),
    /// No object with this ID (or prefix).
    #[error("{kind} \"{id}\" not found")]
    NotFound {
        /// "container", "pod sandbox".
        kind: &'static str,
        /// The ID the caller gave.
        id: String,
    },
    /// Something the request refers to is absent (an image, a target).
    #[error("{0}")]
    Missing(String),
    /// The name is taken by another object or request.
    #[error("{0}")]
    AlreadyExists(String),
    /// The object is not in a state that allows the call.
    #[error("{0}")]
    Precondition(String),
    /// A call to a pod's shim failed.
    #[error("{what}: {source}")]
    Task {
        /// The call ("start task").
        what: &'static str,
        /// How it failed.
        source: TaskError,
    },
    /// The pod's shim cannot be started or reached.
    #[error(transparent)]
    Shim(#[from] ShimError),
    /// The runtime handler a pod asks for cannot run it.
    #[error(transparent)]
    Handler(#[from] crate::handlers::HandlerError),
    /// The pod's shim did not start while its pod was made.
    #[error("pod shim: {0}")]
    PodShim(ShimError),
    /// A CNI plugin failed or timed out while the pod's network was made.
    #[error("pod network: {0}")]
    Network(Arc<crio_network::cni::CniError>),
    /// A pull failed (the pause image's, from a create or a pod start).
    #[error(transparent)]
    Pull(Arc<crio_image::pull::PullError>),
    /// The pause image could not be had.
    #[error("pause_image {image:?}: {source}")]
    PauseImage {
        /// The configured pause image.
        image: String,
        /// Why.
        source: Box<Error>,
    },
    /// The call took longer than the request allowed.
    #[error("{0}")]
    Deadline(String),
    /// The call stopped before it was done (a first create cancelled).
    #[error("{0}")]
    Aborted(String),
    /// A step failed in a way that is not the caller's (a CNI plugin, a
    /// log reopen).
    #[error("{0}")]
    Failed(String),
    /// The daemon failed (files, mounts, tasks).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// `Internal` with a message.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }

    /// A request field that is wrong.
    pub fn field(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::InvalidField {
            field: field.to_string(),
            reason: reason.to_string(),
        }
    }

    /// No such object.
    pub fn not_found(kind: &'static str, id: &str) -> Self {
        Self::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    /// A call to a shim that failed.
    pub fn task(what: &'static str) -> impl FnOnce(TaskError) -> Self {
        move |source| Self::Task { what, source }
    }

    /// Whether the pod's shim could not be reached (as opposed to a shim
    /// that answered with an error).
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Task { source, .. } => matches!(source, TaskError::Unreachable(_)),
            Self::Shim(e) => !matches!(e, ShimError::NoBinary),
            _ => false,
        }
    }
}

/// The daemon core's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
