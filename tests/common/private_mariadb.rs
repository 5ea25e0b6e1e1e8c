//! A MariaDB server of the caller's own (Debian's binaries, a temp data
//! directory, a free port), so a test — or `make chaos` — can stop and start
//! it. Its user `tidemill` (password `tidemill`) may do anything in databases
//! but holds no global privileges, so `max_connections` applies to it (a
//! SUPER user would get a spare connection). Included by path from
//! examples/chaos, so it needs only `super::unique`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PrivateMariaDb {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateMariaDb {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(super::unique("tm_mariadb"));
        std::fs::create_dir_all(&dir).expect("data dir");
        let port = free_port();
        let mut db = Self {
            port,
            dir,
            child: None,
        };
        std::fs::write(db.cnf(), db.config()).expect("my.cnf");
        let out = Command::new("mariadb-install-db")
            .arg(format!("--defaults-file={}", db.cnf().display()))
            .args(run_as())
            .args(["--skip-test-db", "--auth-root-authentication-method=socket"])
            .output()
            .expect("mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        db.start_server();
        db.admin_sql(
            "CREATE USER 'tidemill'@'%' IDENTIFIED BY 'tidemill'; \
             GRANT ALL PRIVILEGES ON `%`.* TO 'tidemill'@'%';",
        );
        db
    }

    /// `mysql://tidemill:tidemill@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://tidemill:tidemill@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL as the server's root over its socket (blocking).
    pub fn admin_sql(&self, sql: &str) {
        let out = self.admin(sql);
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The first column of each row `sql` returns, run as root; empty when it fails.
    pub fn admin_lines(&self, sql: &str) -> Vec<String> {
        let out = self.admin(sql);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_string())
            .collect()
    }

    fn admin(&self, sql: &str) -> std::process::Output {
        Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root", "-NBe", sql])
            .output()
            .expect("mariadb client")
    }

    /// Starts the server and waits until it answers on its socket.
    pub fn start_server(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new("mariadbd")
            .arg(format!("--defaults-file={}", self.cnf().display()))
            .args(run_as())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.answers() {
            assert!(Instant::now() < deadline, "private MariaDB did not come up");
            std::thread::sleep(Duration::from_millis(100)); // polling interval
        }
    }

    /// A clean shutdown: every connection is closed, new ones are refused.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            child.wait().expect("mariadbd exit");
        }
    }

    fn answers(&self) -> bool {
        Command::new("mariadb-admin")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root", "ping"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn cnf(&self) -> PathBuf {
        self.dir.join("my.cnf")
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mariadb.sock")
    }

    fn config(&self) -> String {
        format!(
            "[mysqld]\ndatadir={d}/data\nsocket={d}/mariadb.sock\npid-file={d}/mariadb.pid\n\
             log-error={d}/mariadb.err\nbind-address=127.0.0.1\nport={p}\nskip-name-resolve\n\
             max_connections=100\ncharacter-set-server=utf8mb4\ninnodb_buffer_pool_size=64M\n",
            d = self.dir.display(),
            p = self.port
        )
    }
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// mariadbd refuses to run as root unless told to.
fn run_as() -> Vec<&'static str> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        vec!["--user=root"]
    } else {
        Vec::new()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
