//! A Kafka broker of the test's own (the test bed's jars, a temp directory,
//! free ports), so a test can stop and start it without disturbing others.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PrivateKafka {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// The broker's jars, as `make services-up` fetches them.
fn libs() -> PathBuf {
    let libs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".services/kafka/libs");
    assert!(
        libs.join(".").exists() && std::fs::read_dir(&libs).is_ok_and(|mut d| d.next().is_some()),
        "no Kafka jars in {}: run `make services-up` first",
        libs.display()
    );
    libs
}

impl PrivateKafka {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(super::unique("tm_kafka"));
        std::fs::create_dir_all(&dir).expect("kafka dir");
        let (port, controller) = (free_port(), free_port());
        let template = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/kafka/server.properties"
        ))
        .expect("scripts/kafka/server.properties");
        let props = template
            .replace("127.0.0.1:9092", &format!("127.0.0.1:{port}"))
            .replace("127.0.0.1:9093", &format!("127.0.0.1:{controller}"))
            .replace("@KAFKA_DATA_DIR@", &dir.join("data").display().to_string());
        std::fs::write(dir.join("server.properties"), props).expect("server.properties");
        let status = Command::new("java")
            .args([
                "-Xmx256m",
                "-cp",
                &format!("{}/*", libs().display()),
                "kafka.tools.StorageTool",
                "format",
            ])
            .args(["-t", "MkU3OEVBNTcwNTJENDM2Qk", "-c"])
            .arg(dir.join("server.properties"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run StorageTool (make services-up fetches the jars)");
        assert!(
            status.success(),
            "formatting private Kafka storage in {} failed",
            dir.display()
        );
        let mut kafka = Self {
            port,
            dir,
            child: None,
        };
        kafka.start_broker();
        kafka
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker and waits until it answers.
    pub fn start_broker(&mut self) {
        let log = std::fs::File::create(self.dir.join("kafka.log")).expect("log");
        let child = Command::new("java")
            .args([
                "-Xms128m",
                "-Xmx512m",
                "-cp",
                &format!("{}/*", libs().display()),
                "kafka.Kafka",
            ])
            .arg(self.dir.join("server.properties"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kafka");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        while !self.answers() {
            assert!(Instant::now() < deadline, "private Kafka did not come up");
            std::thread::sleep(Duration::from_millis(200)); // polling interval
        }
    }

    /// SIGTERM (a controlled shutdown) and wait for the process to exit.
    pub fn stop_broker(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            child.wait().expect("kafka exit");
        }
    }

    fn answers(&self) -> bool {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let Ok(consumer) = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .create::<BaseConsumer>()
        else {
            return false;
        };
        consumer
            .fetch_metadata(None, Duration::from_secs(2))
            .is_ok_and(|m| !m.brokers().is_empty())
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
