//! The instances of a fleet run: real `tidemill run` processes, started,
//! stopped and killed as Kubernetes would, each with its own health port.

use anyhow::Context as _;
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Instance {
    child: Child,
    port: u16,
    pub log: PathBuf,
}

pub struct Fleet {
    binary: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    /// Static membership: TIDEMILL__INSTANCE_ID is the instance's name.
    pub static_ids: bool,
    pub instances: BTreeMap<String, Instance>,
    generation: u32,
}

impl Fleet {
    pub fn new(binary: PathBuf, config: PathBuf, dir: PathBuf, static_ids: bool) -> Self {
        Self {
            binary,
            config,
            dir,
            static_ids,
            instances: BTreeMap::new(),
            generation: 0,
        }
    }

    /// Starts instance `name` (as a pod `name` would start).
    pub fn start(&mut self, name: &str) -> anyhow::Result<()> {
        self.generation += 1;
        let port = free_port()?;
        let log = self.dir.join(format!("{name}.{}.log", self.generation));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("TIDEMILL__HEALTH__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(file);
        if self.static_ids {
            cmd.env("TIDEMILL__INSTANCE_ID", name);
        }
        let child = cmd.spawn().context("start tidemill")?;
        self.instances
            .insert(name.to_string(), Instance { child, port, log });
        Ok(())
    }

    /// Waits until `name` answers 200 on /readyz (joined and writing).
    pub fn wait_ready(&mut self, name: &str, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            let inst = self.instances.get_mut(name).context("no such instance")?;
            if let Ok(Some(status)) = inst.child.try_wait() {
                anyhow::bail!(
                    "{name} exited ({status}) before it was ready; see {}",
                    inst.log.display()
                );
            }
            if http_status(inst.port, "/readyz") == Some(200) {
                return Ok(started.elapsed());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{name} not ready after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50)); // polling interval
        }
    }

    /// SIGTERM and wait for the exit, as Kubernetes stops a pod; whether it exited 0.
    pub fn stop(&mut self, name: &str) -> anyhow::Result<bool> {
        let mut inst = self.instances.remove(name).context("no such instance")?;
        signal(&inst.child, "-TERM")?;
        Ok(inst.child.wait()?.success())
    }

    /// SIGKILL: no flush, no commit, no goodbye.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let mut inst = self.instances.remove(name).context("no such instance")?;
        inst.child.kill()?;
        inst.child.wait()?;
        Ok(())
    }

    /// SIGSTOP or SIGCONT.
    pub fn signal(&self, name: &str, sig: &str) -> anyhow::Result<()> {
        signal(
            &self.instances.get(name).context("no such instance")?.child,
            sig,
        )
    }

    /// Every instance still running.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for (name, inst) in &mut self.instances {
            if let Ok(Some(status)) = inst.child.try_wait() {
                anyhow::bail!("{name} exited ({status}); see {}", inst.log.display());
            }
        }
        Ok(())
    }

    /// How many times `name`'s current process logged a revocation.
    pub fn revocations(&self, name: &str) -> usize {
        self.instances.get(name).map_or(0, |i| {
            std::fs::read_to_string(&i.log)
                .unwrap_or_default()
                .matches("partitions revoked")
                .count()
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.instances.keys().cloned().collect()
    }

    pub fn stop_all(&mut self) {
        for name in self.names() {
            let _ = self.stop(&name);
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for inst in self.instances.values_mut() {
            let _ = inst.child.kill();
            let _ = inst.child.wait();
        }
    }
}

fn signal(child: &Child, sig: &str) -> anyhow::Result<()> {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()?
        .success();
    anyhow::ensure!(ok, "kill {sig} {} failed", child.id());
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The status code of `GET path` on 127.0.0.1:`port`, if it answered.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
    let mut head = [0u8; 16];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The tidemill binary next to this example (same profile), built first by make.
pub fn tidemill_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("example binary has no parent directory")?;
    let bin = dir.join("tidemill");
    anyhow::ensure!(
        bin.exists(),
        "{} missing: run `cargo build --release` first",
        bin.display()
    );
    Ok(bin)
}
