//! Building CRI errors: gRPC status values whose message names what was wrong.

use tonic::{Code, Status};

/// `InvalidArgument` naming the request field and what is wrong with it.
pub fn invalid_field(field: &str, why: impl std::fmt::Display) -> Status {
    Status::new(Code::InvalidArgument, format!("{field}: {why}"))
}

/// `NotFound` for an object kind and the id the caller gave.
pub fn not_found(kind: &str, id: &str) -> Status {
    Status::new(Code::NotFound, format!("{kind} \"{id}\" not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_subject() {
        let s = invalid_field("config.metadata.name", "must not be empty");
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "config.metadata.name: must not be empty");
        let s = not_found("pod sandbox", "abc");
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains("\"abc\""));
    }
}
