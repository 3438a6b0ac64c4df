//! The `porteiro` binary's commands, run as a user would run them.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

struct Cli {
    dir: std::path::PathBuf,
}

impl Cli {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("porteiro-cli-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_porteiro"));
        cmd.args(args)
            .env_clear()
            .current_dir(&self.dir)
            .env("DATA_DIR", &self.dir)
            .env("ARGON2_MEMORY_KIB", "256")
            .env("ARGON2_ITERATIONS", "1")
            .env("LOG_LEVEL", "warn")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, &[], stdin);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn invalid_configuration_stops_with_one_line_naming_the_variable() {
    let cli = Cli::new();
    for (var, value) in [
        ("SERVER_PORT", "http"),
        ("JWT_EXPIRATION", "15m"),
        ("EMAIL_SMTP_TLS", "sometimes"),
        // Plain HTTP off loopback without ALLOW_INSECURE_COOKIES=true.
        ("PUBLIC_URL", "http://id.example.com"),
    ] {
        let out = cli.run(&["config", "check"], &[(var, value)], None);
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("configuration error: {var}:")),
            "{stderr}"
        );
    }
    let out = cli.ok(&["config", "check"], None);
    assert!(out.contains("configuration is valid"));
}

#[test]
fn every_command_has_help() {
    let cli = Cli::new();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["user", "--help"],
        vec!["user", "create", "--help"],
        vec!["user", "list", "--help"],
        vec!["user", "set-password", "--help"],
        vec!["user", "unlock", "--help"],
        vec!["keys", "rotate", "--help"],
        vec!["config", "check", "--help"],
    ] {
        let out = cli.ok(&args, None);
        assert!(out.contains("Usage"), "{args:?}");
    }
}

#[test]
fn users_and_keys_are_managed_from_the_command_line() {
    let cli = Cli::new();
    assert!(
        cli.ok(&["migrate"], None)
            .contains("migrations applied (sqlite database)")
    );
    assert!(cli.dir.join("porteiro.db").exists());
    let created = cli.ok(
        &[
            "user",
            "create",
            "--username",
            "ana",
            "--email",
            "Ana@Example.com",
            "--admin",
            "--password-stdin",
        ],
        Some("MinhaS3nha!Forte\n"),
    );
    assert!(
        created.contains("created ana <ana@example.com>") && created.contains("(admin)"),
        "{created}"
    );
    assert!(
        !created.contains("MinhaS3nha"),
        "a given password is never echoed"
    );
    let generated = cli.ok(
        &[
            "user",
            "create",
            "--username",
            "bia",
            "--email",
            "bia@example.com",
        ],
        None,
    );
    assert!(
        generated.lines().any(|l| l.starts_with("password: ")),
        "{generated}"
    );
    let weak = cli.run(
        &[
            "user",
            "create",
            "--username",
            "caio",
            "--email",
            "caio@example.com",
            "--password-stdin",
        ],
        &[],
        Some("123"),
    );
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("weak password"));
    let list = cli.ok(&["user", "list"], None);
    assert!(
        list.contains("ana")
            && list.contains("admin")
            && list.contains("bia")
            && list.contains("(2 users)"),
        "{list}"
    );
    assert!(
        cli.ok(
            &["user", "set-password", "bia", "--password-stdin"],
            Some("Outra-S3nha-Boa")
        )
        .contains("password of bia changed")
    );
    assert!(
        cli.ok(&["user", "unlock", "BIA@example.com"], None)
            .contains("bia unlocked")
    );
    assert!(
        !cli.run(&["user", "unlock", "nobody"], &[], None)
            .status
            .success()
    );
    let first = cli.ok(&["keys", "rotate"], None);
    let second = cli.ok(&["keys", "rotate"], None);
    assert!(
        first.starts_with("new signing key ") && first != second,
        "{first} {second}"
    );
}
