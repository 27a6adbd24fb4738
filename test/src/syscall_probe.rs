//! Tiny static x86_64 programs that make one system call and exit with its
//! errno (0 on success): what a seccomp filter answers, observed from
//! inside a container whose image has no tool that makes that call (busybox
//! has no `clone` with namespace flags, no `clone3`, no io_uring).

/// One argument of the probed call.
#[derive(Debug, Clone, Copy)]
pub enum Arg {
    /// This value.
    Value(u64),
    /// The address of the program's writable buffer (see [`program`]).
    Buffer,
}

/// Where the program is loaded.
const BASE: u64 = 0x40_0000;
/// ELF header plus the one program header.
const HEADERS: usize = 64 + 56;
/// Size of the writable buffer after the code.
const BUFFER: usize = 256;

/// An ELF executable that calls system call `nr` with `args` (in rdi, rsi,
/// rdx, r10, r8, r9) and exits with the errno, or 0 when the call returned
/// a non-negative value (after reaping the child a clone made; the child
/// exits 0 too). `buffer` (at most
/// 256 bytes, zero-filled beyond) is the content of the buffer [`Arg::Buffer`]
/// points to; the kernel may write to it.
pub fn program(nr: u64, args: [Arg; 6], buffer: &[u8]) -> Vec<u8> {
    assert!(buffer.len() <= BUFFER, "probe buffer too large");
    // Code first, so the buffer's address is known once its length is.
    let mut code = Vec::new();
    let mov = |code: &mut Vec<u8>, opcode: [u8; 2], value: u64| {
        code.extend_from_slice(&opcode);
        code.extend_from_slice(&value.to_le_bytes());
    };
    // movabs into rdi, rsi, rdx, r10, r8, r9.
    let registers = [
        [0x48, 0xbf],
        [0x48, 0xbe],
        [0x48, 0xba],
        [0x49, 0xba],
        [0x49, 0xb8],
        [0x49, 0xb9],
    ];
    let code_len = 10 * 7 + 45;
    let buffer_address = BASE + (HEADERS + code_len) as u64;
    mov(&mut code, [0x48, 0xb8], nr); // mov rax, nr
    for (register, arg) in registers.iter().zip(args) {
        let value = match arg {
            Arg::Value(v) => v,
            Arg::Buffer => buffer_address,
        };
        mov(&mut code, *register, value);
    }
    code.extend_from_slice(&[
        0x0f, 0x05, // syscall
        0x48, 0x85, 0xc0, // test rax, rax
        0x78, 0x19, // js failed
        // Succeeded: reap a child the call made (ECHILD when none), exit 0.
        0x48, 0xc7, 0xc7, 0xff, 0xff, 0xff, 0xff, // mov rdi, -1
        0x31, 0xf6, // xor esi, esi
        0x31, 0xd2, // xor edx, edx
        0x45, 0x31, 0xd2, // xor r10d, r10d
        0xb8, 0x3d, 0x00, 0x00, 0x00, // mov eax, 61 (wait4)
        0x0f, 0x05, // syscall
        0x31, 0xff, // xor edi, edi
        0xeb, 0x06, // jmp exit
        // failed: exit with -rax.
        0x48, 0x89, 0xc7, // mov rdi, rax
        0x48, 0xf7, 0xdf, // neg rdi
        // exit:
        0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231 (exit_group)
        0x0f, 0x05, // syscall
    ]);
    assert_eq!(code.len(), code_len);
    let size = (HEADERS + code_len + BUFFER) as u64;

    let mut elf = Vec::with_capacity(size as usize);
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    elf.extend_from_slice(&(BASE + HEADERS as u64).to_le_bytes()); // entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // program headers
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [64u16, 56, 1, 64, 0, 0] {
        // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
        elf.extend_from_slice(&half.to_le_bytes());
    }
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&7u32.to_le_bytes()); // read, write, execute
    elf.extend_from_slice(&0u64.to_le_bytes()); // offset
    elf.extend_from_slice(&BASE.to_le_bytes()); // vaddr
    elf.extend_from_slice(&BASE.to_le_bytes()); // paddr
    elf.extend_from_slice(&size.to_le_bytes()); // filesz
    elf.extend_from_slice(&size.to_le_bytes()); // memsz
    elf.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    assert_eq!(elf.len(), HEADERS);
    elf.extend_from_slice(&code);
    elf.extend_from_slice(buffer);
    elf.resize(size as usize, 0);
    elf
}

/// `clone` flag: a new user namespace.
pub const CLONE_NEWUSER: u64 = 0x1000_0000;
/// The signal a forked child sends its parent at exit.
pub const SIGCHLD: u64 = 17;

/// Probes for what RuntimeDefault must decide, by file name: `fork` (clone
/// without flags), `clone-newuser`, `clone3-newuser` (struct clone_args in
/// the buffer) and `io-uring-setup`.
pub fn namespace_and_io_uring_probes() -> Vec<(&'static str, Vec<u8>)> {
    use Arg::{Buffer, Value};
    let zero = Value(0);
    let clone = |flags| program(56, [Value(flags), zero, zero, zero, zero, zero], &[]);
    // struct clone_args (version 0, 64 bytes): flags, pidfd, child_tid,
    // parent_tid, exit_signal, stack, stack_size, tls.
    let mut clone_args = [0u8; 64];
    clone_args[..8].copy_from_slice(&CLONE_NEWUSER.to_le_bytes());
    clone_args[32..40].copy_from_slice(&SIGCHLD.to_le_bytes());
    vec![
        ("fork", clone(SIGCHLD)),
        ("clone-newuser", clone(CLONE_NEWUSER | SIGCHLD)),
        (
            "clone3-newuser",
            program(
                435,
                [Buffer, Value(64), zero, zero, zero, zero],
                &clone_args,
            ),
        ),
        (
            // io_uring_setup(1, &params): params are 120 zero bytes.
            "io-uring-setup",
            program(425, [Value(1), Buffer, zero, zero, zero, zero], &[]),
        ),
    ]
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// The probes run on the host (no filter): each call succeeds, and a
    /// bad call exits with its errno.
    #[test]
    fn probes_report_the_errno_of_their_call() {
        let dir = tempfile::tempdir().unwrap();
        let run = |name: &str, elf: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, elf).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::process::Command::new(&path)
                .status()
                .unwrap()
                .code()
                .unwrap()
        };
        for (name, elf) in namespace_and_io_uring_probes() {
            assert_eq!(run(name, &elf), 0, "{name}");
        }
        // close(-1): EBADF (9).
        let zero = Arg::Value(0);
        let bad_close = program(3, [Arg::Value(u64::MAX), zero, zero, zero, zero, zero], &[]);
        assert_eq!(run("bad-close", &bad_close), 9);
    }
}
