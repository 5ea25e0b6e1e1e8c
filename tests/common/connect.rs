//! A real Kafka Connect standalone worker running Debezium's PostgreSQL
//! connector (the jars `make services-up` fetches into
//! `.services/connect/libs`), on the test bed's broker and PostgreSQL, so a
//! test can read a change stream Debezium itself wrote — and stop and
//! restart the worker mid-stream (its source offsets are kept in a file).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct Connect {
    dir: PathBuf,
    child: Option<Child>,
}

/// The worker's jars, as `make services-up` fetches them.
fn libs() -> PathBuf {
    let libs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".services/connect/libs");
    assert!(
        std::fs::read_dir(&libs).is_ok_and(|mut d| d.next().is_some()),
        "no Kafka Connect jars in {}: run `make services-up` first",
        libs.display()
    );
    libs
}

/// One connector: its name and its `key=value` properties.
pub struct Connector {
    pub name: String,
    pub props: Vec<(String, String)>,
}

impl Connector {
    /// Debezium's PostgreSQL connector on `db` (pgoutput, a slot and topic
    /// prefix named after `name`), the JSON converter with schemas on or off,
    /// plus `extra` properties.
    pub fn postgres(
        name: &str,
        db: &str,
        tables: &str,
        schemas: bool,
        extra: &[(&str, &str)],
    ) -> Self {
        let schemas = schemas.to_string();
        let mut props: Vec<(String, String)> = [
            (
                "connector.class",
                "io.debezium.connector.postgresql.PostgresConnector",
            ),
            ("database.hostname", "127.0.0.1"),
            ("database.port", "5432"),
            ("database.user", "tidemill"),
            ("database.password", "tidemill"),
            ("database.dbname", db),
            ("database.sslmode", "disable"),
            ("topic.prefix", name),
            ("plugin.name", "pgoutput"),
            ("slot.name", name),
            ("publication.name", name),
            ("publication.autocreate.mode", "filtered"),
            ("table.include.list", tables),
            (
                "key.converter",
                "org.apache.kafka.connect.json.JsonConverter",
            ),
            (
                "value.converter",
                "org.apache.kafka.connect.json.JsonConverter",
            ),
            ("key.converter.schemas.enable", schemas.as_str()),
            ("value.converter.schemas.enable", schemas.as_str()),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
        props.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
        );
        Self {
            name: name.into(),
            props,
        }
    }

    fn file(&self) -> String {
        let mut text = format!("name={}\n", self.name);
        for (k, v) in &self.props {
            text += &format!("{k}={v}\n");
        }
        text
    }
}

impl Connect {
    /// Starts a worker running `connectors`; its offsets, configs and log
    /// live in a fresh directory.
    pub fn start(connectors: &[Connector]) -> Self {
        let dir = std::env::temp_dir().join(super::unique("tm_connect"));
        std::fs::create_dir_all(&dir).expect("connect dir");
        // Its REST listener on a free port: workers of parallel tests must
        // not meet on Connect's default 8083.
        let port = super::http::free_port();
        let worker = format!(
            "bootstrap.servers={brokers}\n\
             key.converter=org.apache.kafka.connect.json.JsonConverter\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\n\
             offset.storage.file.filename={offsets}\n\
             offset.flush.interval.ms=500\n\
             listeners=http://127.0.0.1:{port}\n\
             plugin.discovery=only_scan\n",
            brokers = super::kafka::brokers(),
            offsets = dir.join("offsets").display(),
        );
        std::fs::write(dir.join("worker.properties"), worker).expect("worker.properties");
        let log4j = format!(
            "appender.f.type = File\nappender.f.name = F\nappender.f.fileName = {}\n\
             appender.f.layout.type = PatternLayout\nappender.f.layout.pattern = %d %p %c{{1}} %m%n\n\
             rootLogger.level = info\nrootLogger.appenderRef.f.ref = F\n",
            dir.join("connect.log").display()
        );
        std::fs::write(dir.join("log4j2.properties"), log4j).expect("log4j2.properties");
        for c in connectors {
            std::fs::write(dir.join(format!("{}.properties", c.name)), c.file())
                .expect("connector properties");
        }
        let mut connect = Self { dir, child: None };
        connect.spawn();
        connect
    }

    fn spawn(&mut self) {
        let mut connectors: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .expect("connect dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "properties")
                    && !p.ends_with("worker.properties")
                    && !p.ends_with("log4j2.properties")
            })
            .collect();
        connectors.sort();
        let out = std::fs::File::create(self.dir.join("stdout.log")).expect("stdout log");
        let child = Command::new("java")
            .args(["-Xmx384m", "-XX:TieredStopAtLevel=1", "-cp"])
            .arg(format!("{}/*", libs().display()))
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.join("log4j2.properties").display()
            ))
            .arg("org.apache.kafka.connect.cli.ConnectStandalone")
            .arg(self.dir.join("worker.properties"))
            .args(&connectors)
            .stdout(out.try_clone().expect("stdout log"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("start Kafka Connect (java)");
        self.child = Some(child);
    }

    /// SIGTERM, then waits (up to 60 s) for the worker to stop its tasks and
    /// store their offsets, as an operator's restart does. Not SIGKILL: a
    /// standalone worker killed while it rewrites its offsets file was seen
    /// to come back with no offsets at all and snapshot again (docs/cdc.md,
    /// "Known limits").
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "SIGTERM to Kafka Connect");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while matches!(child.try_wait(), Ok(None)) {
            assert!(
                std::time::Instant::now() < deadline,
                "Kafka Connect still running 60 s after SIGTERM:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL (also on drop).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL Kafka Connect");
            child.wait().expect("reap Kafka Connect");
        }
    }

    /// Starts the worker again with the same offsets and connectors.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The worker's log, for a failure's diagnosis.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("connect.log")).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
            .collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Connect {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
