//! The daemon's errors as gRPC status codes: the one place they are mapped.

use crio_api::Code;
use crio_image::pull::PullError;
use crio_network::cni::CniError;
use tonic::Status;

use crate::error::Error;
use crate::handlers::HandlerError;
use crate::shim::{ShimError, TaskError};

/// The gRPC code of an error.
fn code(e: &Error) -> Code {
    match e {
        Error::InvalidField { .. } | Error::Invalid(_) => Code::InvalidArgument,
        Error::NotFound { .. } | Error::Missing(_) => Code::NotFound,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        Error::Precondition(_) => Code::FailedPrecondition,
        Error::Task { source, .. } => match source {
            TaskError::NotFound(_) => Code::NotFound,
            TaskError::Failed(_) => Code::Unknown,
            TaskError::Unreachable(_) => Code::Unavailable,
        },
        Error::Shim(ShimError::NoBinary) => Code::FailedPrecondition,
        Error::Handler(e)
        | Error::Shim(ShimError::Handler(e))
        | Error::PodShim(ShimError::Handler(e)) => match e {
            HandlerError::Unknown(_) => Code::InvalidArgument,
            HandlerError::Unusable { .. } => Code::FailedPrecondition,
        },
        Error::PodShim(ShimError::StartTimeout { .. }) => Code::DeadlineExceeded,
        Error::Shim(_) | Error::PodShim(_) => Code::Unavailable,
        Error::Network(e) => match **e {
            CniError::Timeout { .. } => Code::DeadlineExceeded,
            CniError::Plugin { .. } | CniError::Exec { .. } => Code::Unknown,
        },
        Error::Pull(e) => pull_code(e),
        Error::PauseImage { source, .. } => code(source),
        Error::Deadline(_) => Code::DeadlineExceeded,
        Error::Aborted(_) => Code::Aborted,
        Error::Failed(_) => Code::Unknown,
        Error::Internal(_) => Code::Internal,
    }
}

fn pull_code(e: &PullError) -> Code {
    match e {
        PullError::InvalidName(_) => Code::InvalidArgument,
        PullError::Blocked(_) | PullError::Rejected(_) => Code::PermissionDenied,
        PullError::NotFound(_) => Code::NotFound,
        PullError::Unauthorized(_) => Code::Unauthenticated,
        PullError::Cancelled(_) => Code::Cancelled,
        PullError::Failed(_) => Code::Unknown,
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        Status::new(code(&e), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        let cases = [
            (
                Error::field("config.log_path", "bad"),
                Code::InvalidArgument,
                "config.log_path: bad",
            ),
            (
                Error::not_found("container", "abc"),
                Code::NotFound,
                "container \"abc\" not found",
            ),
            (
                Error::task("start task")(TaskError::Unreachable("gone".into())),
                Code::Unavailable,
                "start task: gone",
            ),
            (
                Error::task("kill task")(TaskError::NotFound("no such".into())),
                Code::NotFound,
                "kill task: no such",
            ),
            (
                Error::PauseImage {
                    image: "pause:3".into(),
                    source: Box::new(Error::Pull(std::sync::Arc::new(PullError::NotFound(
                        "absent".into(),
                    )))),
                },
                Code::NotFound,
                "pause_image \"pause:3\": absent",
            ),
            (
                Error::Network(std::sync::Arc::new(CniError::Timeout {
                    plugin: "hang".into(),
                    file: "/etc/cni/net.d/10-hang.conflist".into(),
                    command: "ADD",
                    timeout: std::time::Duration::from_secs(2),
                })),
                Code::DeadlineExceeded,
                "pod network: CNI plugin \"hang\" (/etc/cni/net.d/10-hang.conflist) ADD timed out after 2s: killed",
            ),
            (
                Error::Handler(HandlerError::Unusable {
                    name: "crun".into(),
                    reason: "`crun features` failed".into(),
                }),
                Code::FailedPrecondition,
                "runtime_handler \"crun\" cannot run pods: `crun features` failed",
            ),
            (
                Error::Handler(HandlerError::Unknown("kata".into())),
                Code::InvalidArgument,
                "runtime_handler \"kata\": no such runtime handler is configured",
            ),
            (
                Error::Shim(ShimError::NoBinary),
                Code::FailedPrecondition,
                "",
            ),
        ];
        for (e, want, message) in cases {
            let s = Status::from(e);
            assert_eq!(s.code(), want, "{s:?}");
            if !message.is_empty() {
                assert_eq!(s.message(), message);
            }
        }
    }
}
