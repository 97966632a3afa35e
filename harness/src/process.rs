//! Processes and ports. Every process a test starts is owned by a
//! [`ProcessGuard`], which kills it by PID (never by name) when dropped, also
//! when the test panics.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A child process that is killed (SIGKILL) and reaped when the guard drops.
pub struct ProcessGuard {
    name: String,
    child: Option<Child>,
}

impl ProcessGuard {
    pub fn spawn(name: impl Into<String>, cmd: &mut Command) -> io::Result<Self> {
        let child = cmd.spawn()?;
        Ok(Self {
            name: name.into(),
            child: Some(child),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends a signal by PID (e.g. `libc::SIGSTOP`, `libc::SIGCONT`, `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        let pid = self.pid();
        if pid == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "process already reaped",
            ));
        }
        // SAFETY: kill(2) with a PID we spawned and have not reaped yet.
        if unsafe { libc::kill(pid as i32, sig) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// `kill -9` and reap. Reaping matters: an unreaped child stays a zombie and
    /// `kill -0` keeps succeeding on it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the process to exit on its own (after SIGTERM, say).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free on 127.0.0.1 a moment ago (bind to port 0, read it back).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports. The listeners are held until all are chosen so the
/// kernel cannot hand out the same port twice.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

/// Polls until something accepts TCP connections on `addr`, or `timeout` passes.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(16);
        let mut sorted = ports.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len());
    }

    #[test]
    fn guard_kills_on_drop() {
        let guard = ProcessGuard::spawn("sleep", Command::new("sleep").arg("30")).unwrap();
        let pid = guard.pid();
        drop(guard);
        // Reaped by the guard, so /proc/<pid> is gone (no zombie left behind).
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
