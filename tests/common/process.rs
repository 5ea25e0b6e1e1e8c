//! The real `tidemill` binary as a child process, for kill/restart scenarios.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

pub struct Tidemill {
    /// Behind a lock so that checking whether it still runs needs no `&mut`
    /// (a `wait_for` condition can ask while its diagnosis reads the log).
    child: std::sync::Mutex<Option<Child>>,
    pub log: PathBuf,
}

impl Tidemill {
    /// Starts `tidemill run --config <config>`; stdout and stderr go to `<config>.<tag>.log`.
    pub fn start(config: &Path, tag: &str) -> Self {
        Self::start_with_env(config, tag, &[])
    }

    /// As [`Tidemill::start`], with extra environment variables (config overrides).
    pub fn start_with_env(config: &Path, tag: &str, envs: &[(&str, &str)]) -> Self {
        let log = config.with_extension(format!("{tag}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_tidemill"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .expect("spawn tidemill");
        Self {
            child: std::sync::Mutex::new(Some(child)),
            log,
        }
    }

    /// SIGKILL: no flush, no commit, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.slot().take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }

    /// SIGTERM, then waits for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.slot().take() else {
            return false;
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        child.wait().expect("wait").success()
    }

    pub fn pid(&self) -> u32 {
        self.lock().as_ref().map_or(0, Child::id)
    }

    /// How the process ended, once it has (`None` while it runs).
    pub fn exit_status(&self) -> Option<std::process::ExitStatus> {
        self.lock()
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn is_running(&self) -> bool {
        self.lock()
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn slot(&mut self) -> &mut Option<Child> {
        self.child
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tidemill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a signal (`-STOP`, `-CONT`, …) to the process.
pub fn signal(process: &Tidemill, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &process.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Runs `tidemill ARGS` to completion with extra environment variables.
pub fn run_once(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tidemill"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run tidemill")
}

/// A finished command's stdout and stderr together.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `toml` in a temporary `tidemill.toml`: the directory (kept alive by the
/// caller) and the file's path.
pub fn write_config(toml: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tidemill.toml");
    std::fs::write(&path, toml).expect("write config");
    let path = path.display().to_string();
    (dir, path)
}
