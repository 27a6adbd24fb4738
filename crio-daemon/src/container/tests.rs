//! Unit tests of the container operations.

use super::create::check_log_path;

#[test]
fn log_paths_stay_below_the_log_directory() {
    for good in ["", "c.log", "c/0.log", "./c/0.log", "c/./0.log"] {
        assert!(check_log_path(good).is_ok(), "{good}");
    }
    for bad in [
        "/etc/passwd",
        "../x",
        "c/../../x",
        "c/..",
        "..",
        ".",
        "c/",
        "/",
    ] {
        let e = tonic::Status::from(check_log_path(bad).unwrap_err());
        assert_eq!(e.code(), crio_api::Code::InvalidArgument, "{bad}");
        assert!(e.message().starts_with("config.log_path: "), "{bad}: {e:?}");
    }
}
