//! A pod shim's place under the systemd cgroup driver: a transient scope
//! `crio-shim-<pod>.scope` in the pod's slice, asked of systemd over the
//! system bus (CRI-O does the same for conmon). The shim is alone in it,
//! beside the containers' `crio-<id>.scope`s: cgroup v2 allows processes
//! only in leaves, and systemd removes the scope once the shim has exited.

use std::time::{Duration, Instant};

use zbus::zvariant::Value;

/// The scope unit of pod `pod`'s shim.
pub fn unit(pod: &str) -> String {
    format!("crio-shim-{pod}.scope")
}

/// The properties of a shim's scope in `slice` holding `pid`.
fn properties(slice: &str, pid: u32) -> Vec<(&'static str, Value<'_>)> {
    vec![
        ("Description", Value::from("crio-rs pod shim")),
        ("Slice", Value::from(slice)),
        ("PIDs", Value::from(vec![pid])),
        // No ordering against shutdown.target and friends: the scope is
        // the shim's home, not a service of the boot.
        ("DefaultDependencies", Value::from(false)),
        // Gone once empty, even when the shim failed.
        ("CollectMode", Value::from("inactive-or-failed")),
    ]
}

/// Whether process `pid` is in a cgroup named `unit` (its line in
/// `/proc/PID/cgroup` ends with it, on v2 and on v1's systemd hierarchy).
fn is_in(pid: u32, unit: &str) -> bool {
    let suffix = format!("/{unit}");
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|text| text.lines().any(|l| l.ends_with(&suffix)))
}

/// Calls `method` of systemd's manager with `body`.
async fn manager_call<B>(bus: &zbus::Connection, method: &str, body: &B) -> zbus::Result<()>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    bus.call_method(
        Some("org.freedesktop.systemd1"),
        "/org/freedesktop/systemd1",
        Some("org.freedesktop.systemd1.Manager"),
        method,
        body,
    )
    .await
    .map(drop)
}

/// Puts process `pid` in scope `unit` of `slice`, within `timeout`: the
/// transient unit is started (or, when a unit of that name is still
/// there, the process attached to it) and the move awaited, since systemd
/// runs the start as a job after it answers.
pub async fn place(slice: &str, unit: &str, pid: u32, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let ask = async {
        let bus = zbus::Connection::system()
            .await
            .map_err(|e| format!("connect to the system bus: {e}"))?;
        let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        let body = (unit, "fail", properties(slice, pid), aux);
        match manager_call(&bus, "StartTransientUnit", &body).await {
            Ok(()) => Ok(()),
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.UnitExists" =>
            {
                manager_call(&bus, "AttachProcessesToUnit", &(unit, "", vec![pid]))
                    .await
                    .map_err(|e| format!("attach to {unit}: {e}"))
            }
            Err(e) => Err(format!("start {unit}: {e}")),
        }
    };
    match tokio::time::timeout_at(deadline.into(), ask).await {
        Ok(result) => result?,
        Err(_) => return Err(format!("systemd did not answer within {timeout:?}")),
    }
    while !is_in(pid, unit) {
        if Instant::now() >= deadline {
            return Err(format!("process {pid} not in {unit} after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_holds_one_pid_in_the_slice_and_is_collected() {
        assert_eq!(unit("abc"), "crio-shim-abc.scope");
        let props = properties("kubepods-pod1.slice", 42);
        let get = |k: &str| props.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("Slice"), Some(Value::from("kubepods-pod1.slice")));
        assert_eq!(get("PIDs"), Some(Value::from(vec![42u32])));
        assert_eq!(get("CollectMode"), Some(Value::from("inactive-or-failed")));
        // The signature systemd's StartTransientUnit takes.
        let body = (
            "u",
            "fail",
            props,
            Vec::<(&str, Vec<(&str, Value<'_>)>)>::new(),
        );
        let sig = zbus::zvariant::DynamicType::signature(&body).to_string();
        assert_eq!(sig, "(ssa(sv)a(sa(sv)))");
    }

    #[test]
    fn this_process_is_in_its_own_cgroup_not_in_a_scope_it_is_not() {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let last = own.lines().next().unwrap().rsplit('/').next().unwrap();
        if !last.is_empty() {
            assert!(is_in(std::process::id(), last));
        }
        assert!(!is_in(std::process::id(), "crio-shim-none.scope"));
    }
}
