//! The SSH executor against a real OpenSSH sshd on 127.0.0.1 (Debian's
//! openssh-server, throwaway host and user keys): key auth, exec, SFTP
//! upload, and every way the connection must be refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use amq_harness::sshd::{KeyPair, Sshd};
use amqctl::executor::{ExecError, FileUpload, Host, HostKeyPolicy, SshHost, SshTarget};

fn target(sshd: &Sshd, known_hosts: &Path, policy: HostKeyPolicy) -> SshTarget {
    SshTarget {
        name: "node-a".into(),
        address: "127.0.0.1".into(),
        port: sshd.port(),
        user: "root".into(),
        identity: Some(sshd.user_key.private.clone()),
        known_hosts: known_hosts.to_path_buf(),
        policy,
        connect_timeout: Duration::from_secs(5),
    }
}

fn trusted(sshd: &Sshd, dir: &Path) -> SshTarget {
    let kh = dir.join("known_hosts");
    std::fs::write(&kh, format!("{}\n", sshd.known_hosts_line(&[]))).unwrap();
    target(sshd, &kh, HostKeyPolicy::Strict)
}

#[test]
fn runs_commands_with_output_exit_status_and_stdin() {
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = SshHost::connect(trusted(&sshd, dir.path())).unwrap();

    let out = host.run("echo out; echo err >&2; exit 3", None).unwrap();
    assert_eq!(out.stdout_str(), "out\n");
    assert_eq!(out.stderr_str(), "err");
    assert_eq!(out.status, 3);

    let out = host.run("tr a-z A-Z", Some(b"hello\n")).unwrap();
    assert!(out.success());
    assert_eq!(out.stdout_str(), "HELLO\n");

    // One session serves many commands (the deploy does all of a host's work on one).
    for i in 0..20 {
        let out = host.run(&format!("echo {i}"), None).unwrap();
        assert_eq!(out.stdout_str(), format!("{i}\n"));
    }
}

#[test]
fn uploads_atomically_with_mode_and_reads_back() {
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = SshHost::connect(trusted(&sshd, dir.path())).unwrap();

    let base = dir.path().join("remote/base");
    let binary: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let files = vec![
        FileUpload {
            path: base.join("bin/amq-broker"),
            contents: Arc::from(binary.clone()),
            mode: 0o755,
        },
        FileUpload {
            path: base.join("conf/secret.properties"),
            contents: Arc::from(&b"token=s3cr3t\n"[..]),
            mode: 0o600,
        },
    ];
    host.put_files(&files).unwrap();

    assert_eq!(std::fs::read(base.join("bin/amq-broker")).unwrap(), binary);
    assert_eq!(mode_of(&base.join("bin/amq-broker")), 0o755);
    assert_eq!(mode_of(&base.join("conf/secret.properties")), 0o600);
    // Nothing is left under the staging name.
    assert!(!base.join("bin/amq-broker.amqctl-new").exists());

    assert_eq!(
        host.read_file(&base.join("conf/secret.properties"))
            .unwrap()
            .as_deref(),
        Some(&b"token=s3cr3t\n"[..])
    );
    assert_eq!(host.read_file(&base.join("conf/missing")).unwrap(), None);

    let sums = host
        .checksums(&[base.join("bin/amq-broker"), base.join("conf/missing")])
        .unwrap();
    assert_eq!(sums.len(), 1);
    let expected = sha256_hex(&binary);
    assert_eq!(sums[&base.join("bin/amq-broker")], expected);

    // Replacing a file replaces it whole, mode included.
    host.put_files(&[FileUpload {
        path: base.join("conf/secret.properties"),
        contents: Arc::from(&b"token=rotated\n"[..]),
        mode: 0o640,
    }])
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(base.join("conf/secret.properties")).unwrap(),
        "token=rotated\n"
    );
    assert_eq!(mode_of(&base.join("conf/secret.properties")), 0o640);
}

#[test]
fn unknown_host_key_is_refused_unless_accept_new() {
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    std::fs::write(&kh, "# operator's file\n").unwrap();

    let err = SshHost::connect(target(&sshd, &kh, HostKeyPolicy::Strict))
        .err()
        .expect("unknown host must be refused");
    assert!(matches!(err, ExecError::HostKeyUnknown { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("node-a"), "{msg}");
    assert!(
        msg.contains(&format!("[127.0.0.1]:{}", sshd.port())),
        "{msg}"
    );
    assert!(msg.contains("--accept-new-host-keys"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        "# operator's file\n",
        "a refused host must not be recorded"
    );

    let host = SshHost::connect(target(&sshd, &kh, HostKeyPolicy::AcceptNew)).unwrap();
    assert!(host.run("true", None).unwrap().success());
    drop(host);
    let recorded = std::fs::read_to_string(&kh).unwrap();
    assert!(recorded.starts_with("# operator's file\n"), "{recorded}");
    assert!(
        recorded.contains(&sshd.host_key.key_field()),
        "the accepted key is recorded: {recorded}"
    );

    // Now known: a strict connection succeeds.
    SshHost::connect(target(&sshd, &kh, HostKeyPolicy::Strict)).unwrap();
}

#[test]
fn changed_host_key_is_refused_even_with_accept_new() {
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let other = KeyPair::generate(&dir.path().join("impostor"), "impostor").unwrap();
    let kh = dir.path().join("known_hosts");
    std::fs::write(
        &kh,
        format!("[127.0.0.1]:{} {}\n", sshd.port(), other.key_field()),
    )
    .unwrap();
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let err = SshHost::connect(target(&sshd, &kh, policy))
            .err()
            .expect("mismatch must be refused");
        assert!(matches!(err, ExecError::HostKeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("does not match"), "{err}");
        assert!(err.to_string().contains("ssh-keygen -R"), "{err}");
    }
}

#[test]
fn wrong_user_key_is_an_authentication_error_naming_the_key() {
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stranger = KeyPair::generate(&dir.path().join("stranger"), "stranger").unwrap();
    let mut t = trusted(&sshd, dir.path());
    t.identity = Some(stranger.private.clone());
    let err = SshHost::connect(t).err().expect("wrong key must fail");
    assert!(matches!(err, ExecError::Auth { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("`root`"), "{msg}");
    assert!(
        msg.contains(&stranger.private.display().to_string()),
        "{msg}"
    );

    let mut t = trusted(&sshd, dir.path());
    t.identity = Some(PathBuf::from("/nonexistent/id_ed25519"));
    let err = SshHost::connect(t).err().expect("missing key must fail");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn unreachable_host_is_a_connect_error() {
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut t = trusted(&sshd, dir.path());
    // A port nothing listens on.
    t.port = amq_harness::free_port();
    let err = SshHost::connect(t).err().expect("must fail");
    assert!(matches!(err, ExecError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");

    let mut t = trusted(&sshd, dir.path());
    t.address = "no-such-host.invalid".into();
    let err = SshHost::connect(t).err().expect("must fail");
    assert!(err.to_string().contains("cannot resolve"), "{err}");
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn agent_authentication_without_an_identity_file() {
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    // A private agent in the foreground, owned (and killed) by the guard.
    let _agent = amq_harness::ProcessGuard::spawn(
        "ssh-agent",
        std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock),
    )
    .unwrap();
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = std::process::Command::new("ssh-add")
        .arg(&sshd.user_key.private)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    // Only this test reads SSH_AUTH_SOCK: the others all name a key file.
    std::env::set_var("SSH_AUTH_SOCK", &sock);
    let mut t = trusted(&sshd, dir.path());
    t.identity = None;
    let host = SshHost::connect(t).unwrap();
    assert_eq!(
        host.run("echo via-agent", None).unwrap().stdout_str(),
        "via-agent\n"
    );
}
