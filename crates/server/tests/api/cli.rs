//! The `porteiro` binary's commands, run as a user would run them.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

pub(crate) struct Cli {
    dir: std::path::PathBuf,
}

impl Cli {
    pub(crate) fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("porteiro-cli-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    pub(crate) fn run(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
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

    pub(crate) fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
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
        vec!["user", "disable", "--help"],
        vec!["user", "enable", "--help"],
        vec!["user", "sign-out-all", "--help"],
        vec!["user", "send-password-reset", "--help"],
        vec!["user", "delete", "--help"],
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

#[test]
fn accounts_are_administered_from_the_command_line() {
    let cli = Cli::new();
    let create = |name: &str, admin: bool| {
        let email = format!("{name}@example.com");
        let mut args = vec![
            "user",
            "create",
            "--username",
            name,
            "--email",
            &email,
            "--password-stdin",
        ];
        if admin {
            args.push("--admin");
        }
        cli.ok(&args, Some("MinhaS3nha!Forte"));
    };
    create("ana", true);
    create("bia", false);
    create("bruno", false);
    let fails = |args: &[&str]| {
        let out = cli.run(args, &[], None);
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    };

    // Search and filters.
    let list = cli.ok(&["user", "list", "--q", "B"], None);
    assert!(
        list.contains("bia")
            && list.contains("bruno")
            && !list.contains("ana@")
            && list.contains("(2 users)"),
        "{list}"
    );
    let list = cli.ok(&["user", "list", "--role", "admin"], None);
    assert!(list.contains("ana") && list.contains("(1 users)"), "{list}");
    assert!(
        cli.ok(&["user", "list", "--role", "nobody"], None)
            .contains("(0 users)")
    );

    // Disable and enable.
    assert!(
        cli.ok(&["user", "disable", "bia"], None)
            .contains("bia disabled")
    );
    let list = cli.ok(&["user", "list", "--active", "false"], None);
    assert!(
        list.contains("bia") && list.contains("disabled") && list.contains("(1 users)"),
        "{list}"
    );
    assert!(fails(&["user", "send-password-reset", "bia"]).contains("disabled"));
    assert!(
        cli.ok(&["user", "enable", "BIA@example.com"], None)
            .contains("bia enabled")
    );
    assert!(
        cli.ok(&["user", "list", "--active", "false"], None)
            .contains("(0 users)")
    );

    // Sign-out and a reset link (queued for the server's mail worker).
    assert!(
        cli.ok(&["user", "sign-out-all", "bia"], None)
            .contains("0 session(s) of bia revoked")
    );
    assert!(
        cli.ok(&["user", "send-password-reset", "bia"], None)
            .contains("password-reset link for bia was queued")
    );

    // Deletion needs --yes; the last administrator can be neither disabled nor deleted.
    assert!(fails(&["user", "delete", "bruno"]).contains("--yes"));
    assert!(
        cli.ok(&["user", "delete", "bruno", "--yes"], None)
            .contains("bruno <bruno@example.com> deleted")
    );
    assert!(fails(&["user", "delete", "bruno", "--yes"]).contains("no such user"));
    assert!(fails(&["user", "disable", "ana"]).contains("no active administrator"));
    assert!(fails(&["user", "delete", "ana", "--yes"]).contains("no active administrator"));
    assert!(fails(&["user", "disable", "nobody"]).contains("no such user"));
    let list = cli.ok(&["user", "list"], None);
    assert!(
        list.contains("ana") && list.contains("bia") && list.contains("(2 users)"),
        "{list}"
    );
}

#[test]
fn old_keys_are_retired_and_stale_hashes_counted_from_the_command_line() {
    let cli = Cli::new();
    cli.ok(&["migrate"], None);
    let first = cli.ok(&["keys", "rotate"], None);
    let first_kid = first
        .split_whitespace()
        .nth(3)
        .unwrap()
        .trim_end_matches(';')
        .to_owned();
    // The signing key cannot be retired: that would leave nothing to sign with.
    let refused = cli.run(&["keys", "retire", &first_kid], &[], None);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("keys rotate` first"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    cli.ok(&["keys", "rotate"], None);
    let retired = cli.ok(&["keys", "retire", &first_kid], None);
    assert!(retired.contains("retired"), "{retired}");
    assert!(
        !cli.run(&["keys", "retire", &first_kid], &[], None)
            .status
            .success()
    );
    assert!(
        !cli.run(&["keys", "retire", "no-such-kid"], &[], None)
            .status
            .success()
    );
    let status = cli.ok(&["keys", "status"], None);
    let line = status
        .lines()
        .find(|l| l.trim_start().starts_with(&first_kid))
        .unwrap();
    assert!(line.contains("retired"), "{status}");
    assert_eq!(
        status
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("signing"))
            .count(),
        1,
        "{status}"
    );

    cli.ok(
        &[
            "user",
            "create",
            "--username",
            "ana",
            "--email",
            "ana@example.com",
            "--password-stdin",
        ],
        Some("MinhaS3nha!Forte\n"),
    );
    let report = cli.ok(&["user", "rehash-status"], None);
    assert!(
        report.contains("accounts:   1 (1 on the configured parameters, 0 to re-hash"),
        "{report}"
    );
    // The same database under stronger parameters: the account is now stale.
    let out = cli.run(
        &["user", "rehash-status"],
        &[("ARGON2_ITERATIONS", "2")],
        None,
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("0 on the configured parameters, 1 to re-hash"),
        "{report}"
    );
    assert!(report.contains("$argon2id$v=19$m=256,t=1,p=1$"), "{report}");
}

#[test]
fn guessable_passwords_are_refused_by_the_command_line() {
    use crate::password_policy::{GUESSABLE, PASSPHRASE};
    let cli = Cli::new();
    cli.ok(&["migrate"], None);
    let create = |password: &str| {
        cli.run(
            &[
                "user",
                "create",
                "--username",
                "rui",
                "--email",
                "rui@example.com",
                "--password-stdin",
            ],
            &[],
            Some(&format!("{password}\n")),
        )
    };
    let set = |password: &str| {
        cli.run(
            &["user", "set-password", "rui", "--password-stdin"],
            &[],
            Some(&format!("{password}\n")),
        )
    };
    for (password, reason) in GUESSABLE {
        let expected = match reason {
            "common" => "weak password: This password is too common.",
            _ => "weak password: This password is among the first an attacker would try.",
        };
        let out = create(password);
        assert!(!out.status.success(), "{password}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{password}: {stderr}");
    }
    assert!(!cli.ok(&["user", "list"], None).contains("rui"));
    assert!(create(PASSPHRASE).status.success());
    for (password, reason) in GUESSABLE {
        let out = set(password);
        assert!(!out.status.success(), "{password}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("weak password"),
            "{password} ({reason}): {stderr}"
        );
    }
    assert!(
        cli.ok(
            &["user", "set-password", "rui", "--password-stdin"],
            Some("q7Rt2mXw9pLk\n")
        )
        .contains("password of rui changed")
    );
}
