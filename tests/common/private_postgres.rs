//! A PostgreSQL server of the caller's own (Debian's binaries, a temp data
//! directory, a free port), so a test — or `make chaos` — can stop and start
//! it. Included by path from examples/chaos, so it needs only `super::unique`.

use std::path::PathBuf;
use std::process::Command;

/// A PostgreSQL server of the test's own (Debian's binaries, a temp data
/// directory, a free port), so the test can stop and start it.
pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(super::unique("tm_pg"));
        std::fs::create_dir_all(&dir).expect("data dir");
        let port = free_port();
        let root = is_root();
        if root {
            run(
                "chown",
                &["postgres:postgres", dir.to_str().expect("utf-8 path")],
                false,
            );
        }
        let data = dir.join("data");
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, "tidemill\n").expect("password file");
        if root {
            run(
                "chown",
                &["postgres:postgres", pwfile.to_str().expect("utf-8 path")],
                false,
            );
        }
        run(
            &pg_bin("initdb"),
            &[
                "-D",
                data.to_str().expect("utf-8"),
                "-U",
                "tidemill",
                "--pwfile",
                pwfile.to_str().expect("utf-8"),
                "-A",
                "scram-sha-256",
            ],
            root,
        );
        let pg = Self { port, dir };
        pg.start_server();
        pg
    }

    pub fn url(&self) -> String {
        format!(
            "postgres://tidemill:tidemill@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// `pg_ctl stop -m fast`: every connection is closed, new ones are refused.
    pub fn stop(&self) {
        run(
            &pg_bin("pg_ctl"),
            &["-D", &self.data(), "-m", "fast", "-w", "stop"],
            is_root(),
        );
    }

    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        run(
            &pg_bin("pg_ctl"),
            &[
                "-D",
                &self.data(),
                "-o",
                &opts,
                "-l",
                log.to_str().expect("utf-8"),
                "-w",
                "start",
            ],
            is_root(),
        );
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new(pg_bin("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
        if is_root() {
            let _ = Command::new("runuser")
                .args([
                    "-u",
                    "postgres",
                    "--",
                    &pg_bin("pg_ctl"),
                    "-D",
                    &self.data(),
                    "-m",
                    "immediate",
                    "stop",
                ])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pg_bin(name: &str) -> String {
    let base = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .max()
        .expect("a PostgreSQL version directory");
    base.join("bin").join(name).display().to_string()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(program: &str, args: &[&str], as_postgres: bool) {
    let output = if as_postgres {
        Command::new("runuser")
            .args(["-u", "postgres", "--", program])
            .args(args)
            .output()
    } else {
        Command::new(program).args(args).output()
    }
    .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
