//! An Envoy process guard. Start writes the rendered config into a directory and runs
//!
//! ```text
//! envoy -c <dir>/envoy.yaml --concurrency <workers, 1 by default> --disable-hot-restart -l info \
//!       --file-flush-interval-msec 50
//! ```
//!
//! with stderr (Envoy's own log, where decision records go) in `<dir>/envoy.log` and stdout
//! (the access log of the quickstart config) in `<dir>/envoy.stdout`. Stderr rather than
//! `--log-path`: Envoy buffers a `--log-path` file and flushes it in bursts, while stderr is
//! written line by line, so a test sees a record as soon as the request is answered.
//! Envoy writes access logs through a buffer flushed every 10 s by default; 50 ms lets a test
//! read the access-log line of a request it just made.
//! `--disable-hot-restart` rather than a unique `--base-id`: parallel Envoys then share nothing
//! (no shared-memory segment, no domain socket), and nothing is left behind in `/dev/shm`.
//!
//! Drop stops Envoy (SIGTERM, then SIGKILL after a bounded wait) and reaps it. The child also
//! gets SIGTERM if the thread that started it dies (`PR_SET_PDEATHSIG`), so a test process
//! killed by a time-out cannot leave an Envoy running.

use crate::http::try_send;
use crate::paths::try_envoy_bin;
use crate::records::parse_decision_records;
use serde_json::Value;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Envoy with a wasm module needs a few seconds; a minute means something is wrong.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
const READY_POLL: Duration = Duration::from_millis(100);
/// How long a SIGTERM may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(60);
/// The access log of configurations that write one to a file (`${ACCESS_LOG_PATH}`); the
/// others log to stdout.
pub const ACCESS_LOG_FILE: &str = "access.log";
/// Lines of Envoy's log quoted in start-up failures.
const LOG_TAIL_LINES: usize = 50;

pub struct Envoy {
    child: Child,
    dir: PathBuf,
    admin_port: u16,
    /// Scratch directories are removed on a clean stop and kept when a test panics.
    remove_dir_on_drop: bool,
}

impl Envoy {
    /// Starts `ENVOY_BIN` with this config in a fresh scratch directory and waits for
    /// `/ready` on `admin_port`.
    pub fn start(config_yaml: &str, admin_port: u16) -> Result<Envoy, String> {
        let envoy_bin = try_envoy_bin()?;
        let dir = scratch_dir("envoy")?;
        let mut envoy = Self::spawn(&envoy_bin, &dir, config_yaml, admin_port, 1)?;
        envoy.remove_dir_on_drop = true;
        envoy.wait_ready()?;
        Ok(envoy)
    }

    /// Starts `envoy_bin` with this config and `workers` worker threads in `dir` (created if
    /// needed, kept afterwards) and waits for `/ready` on `admin_port`.
    pub fn start_in(
        envoy_bin: &Path,
        dir: &Path,
        config_yaml: &str,
        admin_port: u16,
        workers: u32,
    ) -> Result<Envoy, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut envoy = Self::spawn(envoy_bin, dir, config_yaml, admin_port, workers)?;
        envoy.wait_ready()?;
        Ok(envoy)
    }

    /// Removes the directory when Envoy is stopped cleanly (not while a test panics), as for
    /// [`Envoy::start`]'s scratch directories.
    pub fn remove_dir_on_drop(&mut self) {
        self.remove_dir_on_drop = true;
    }

    fn spawn(
        envoy_bin: &Path,
        dir: &Path,
        config_yaml: &str,
        admin_port: u16,
        workers: u32,
    ) -> Result<Envoy, String> {
        let config = dir.join("envoy.yaml");
        std::fs::write(&config, config_yaml).map_err(|e| format!("{}: {e}", config.display()))?;
        let create = |name: &str| {
            let path = dir.join(name);
            File::create(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let mut command = Command::new(envoy_bin);
        command
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", &workers.to_string()])
            .args(["--disable-hot-restart", "-l", "info"])
            // Access logs (stdout here) are flushed on a timer, 10 s by default.
            .args(["--file-flush-interval-msec", "50"])
            .stdin(Stdio::null())
            .stdout(create("envoy.stdout")?)
            .stderr(create("envoy.log")?);
        stop_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", envoy_bin.display()))?;
        Ok(Envoy {
            child,
            dir: dir.to_path_buf(),
            admin_port,
            remove_dir_on_drop: false,
        })
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let ready_request = b"GET /ready HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n";
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failure(&format!("Envoy exited during start-up ({status})")));
            }
            let ready = try_send(self.admin_port, ready_request, Duration::from_secs(1))
                .is_ok_and(|response| response.status == 200);
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.failure(&format!(
                    "Envoy not ready on admin port {} within {} s",
                    self.admin_port,
                    READY_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// A start-up failure message; the directory is kept for inspection.
    fn failure(&mut self, what: &str) -> String {
        self.remove_dir_on_drop = false;
        format!(
            "{what}; files in {}; last {LOG_TAIL_LINES} lines of envoy.log:\n{}",
            self.dir.display(),
            self.log_tail(LOG_TAIL_LINES)
        )
    }

    /// Runs `ENVOY_BIN --mode validate -c config_path`: (success, stdout and stderr).
    pub fn validate(config_path: &Path) -> (bool, String) {
        match try_envoy_bin() {
            Ok(envoy_bin) => Self::validate_with(&envoy_bin, config_path),
            Err(message) => panic!("{message}"),
        }
    }

    /// Like [`Envoy::validate`] with an explicit binary. Output goes through files next to the
    /// config (no pipe to fill up), and the run is bounded.
    pub fn validate_with(envoy_bin: &Path, config_path: &Path) -> (bool, String) {
        let output_path = config_path.with_extension("validate.out");
        let run = || -> Result<(bool, String), String> {
            let output = File::create(&output_path).map_err(|e| e.to_string())?;
            let errors = output.try_clone().map_err(|e| e.to_string())?;
            let mut command = Command::new(envoy_bin);
            command
                .args(["--mode", "validate", "-c"])
                .arg(config_path)
                .args(["-l", "info"])
                .stdin(Stdio::null())
                .stdout(output)
                .stderr(errors);
            stop_with_parent(&mut command);
            let mut child = command
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", envoy_bin.display()))?;
            let status = wait_bounded(&mut child, VALIDATE_TIMEOUT);
            let text = std::fs::read(&output_path)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            match status {
                Some(status) => Ok((status.success(), text)),
                None => Err(format!("envoy --mode validate did not finish:\n{text}")),
            }
        };
        run().unwrap_or_else(|message| (false, message))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Envoy's own log (stderr): start-up messages, wasm logs, decision records.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("envoy.log")
    }

    /// The access log: the `${ACCESS_LOG_PATH}` file when the configuration writes one,
    /// else Envoy's stdout (the quickstart's).
    pub fn access_log_path(&self) -> PathBuf {
        let file = self.dir.join(ACCESS_LOG_FILE);
        if file.exists() {
            file
        } else {
            self.dir.join("envoy.stdout")
        }
    }

    pub fn log_text(&self) -> String {
        read_lossy(&self.log_path())
    }

    pub fn access_log_text(&self) -> String {
        read_lossy(&self.access_log_path())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the process is still running (false once it exited, for any reason).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Every complete decision record in the log so far.
    pub fn decision_records(&self) -> Result<Vec<Value>, String> {
        parse_decision_records(&self.log_text())
    }

    /// The record with this `decision_id`, waiting up to `timeout` for Envoy to write it.
    pub fn wait_for_record(&self, decision_id: &str, timeout: Duration) -> Result<Value, String> {
        let found = poll(timeout, || {
            Ok(self
                .decision_records()?
                .into_iter()
                .find(|record| record["decision_id"] == decision_id))
        })?;
        found.ok_or_else(|| {
            format!(
                "no decision record with decision_id {decision_id:?} within {} ms; log tail:\n{}",
                timeout.as_millis(),
                self.log_tail(LOG_TAIL_LINES)
            )
        })
    }

    /// The access-log line (one JSON object per line on stdout) whose `decision_id` matches,
    /// waiting up to `timeout`.
    pub fn wait_for_access_log(
        &self,
        decision_id: &str,
        timeout: Duration,
    ) -> Result<Value, String> {
        let found = poll(timeout, || {
            Ok(self
                .access_log_text()
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|entry| entry["decision_id"] == decision_id))
        })?;
        found.ok_or_else(|| {
            format!(
                "no access-log line with decision_id {decision_id:?} within {} ms:\n{}",
                timeout.as_millis(),
                self.access_log_text()
            )
        })
    }

    /// Waits for Envoy to exit on its own (for example after Ctrl-C).
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait()
    }

    /// Stops Envoy: SIGTERM, then SIGKILL if it has not exited within a bounded wait. Returns
    /// the exit status (None if it could not be reaped).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid; the child is not yet reaped (try_wait
            // above returned None), so the pid cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if let Some(status) = wait_bounded(&mut self.child, STOP_TIMEOUT) {
            return Some(status);
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() || !self.remove_dir_on_drop {
            if self.remove_dir_on_drop {
                eprintln!("Envoy files kept for inspection in {}", self.dir.display());
            }
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Calls `find` every 20 ms until it finds something, or `timeout` passes (then `None`).
fn poll<T>(
    timeout: Duration,
    mut find: impl FnMut() -> Result<Option<T>, String>,
) -> Result<Option<T>, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = find()? {
            return Ok(Some(found));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls the child until it exits or `timeout` passes.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

/// Makes the kernel send SIGTERM to the child when the spawning thread dies, so no Envoy
/// outlives a killed test process.
fn stop_with_parent(command: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe
    // functions (prctl, getppid, _exit).
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// A fresh, unique directory under the system temp dir.
pub fn scratch_dir(label: &str) -> Result<PathBuf, String> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "chaperone-{label}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}
