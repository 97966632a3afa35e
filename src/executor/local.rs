//! This machine as a host: the pseudo-cluster, where every node shares one
//! host told apart by ports. No SSH involved.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{staging_path, ExecError, FileUpload, Host, Output, Result};

pub struct LocalHost {
    name: String,
}

impl LocalHost {
    pub fn new(name: impl Into<String>) -> LocalHost {
        LocalHost { name: name.into() }
    }

    fn io(&self, op: &'static str, path: &Path, source: std::io::Error) -> ExecError {
        ExecError::Io {
            host: self.name.clone(),
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl Host for LocalHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, script: &str, stdin: Option<&[u8]>) -> Result<Output> {
        let sh = Path::new("/bin/sh");
        let mut child = Command::new(sh)
            .arg("-c")
            .arg(script)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.io("run", sh, e))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A command may exit without reading all of its input; that is its business.
            let _ = pipe.write_all(input);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| self.io("run", sh, e))?;
        Ok(Output {
            status: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    fn put_files(&self, files: &[FileUpload]) -> Result<()> {
        for f in files {
            if let Some(dir) = f.path.parent() {
                fs::create_dir_all(dir).map_err(|e| self.io("create directory", dir, e))?;
            }
            let staging = staging_path(&f.path);
            let write = || -> std::io::Result<()> {
                let mut file = fs::File::create(&staging)?;
                file.set_permissions(fs::Permissions::from_mode(f.mode))?;
                file.write_all(&f.contents)?;
                file.sync_all()?;
                fs::rename(&staging, &f.path)
            };
            write().map_err(|e| {
                let _ = fs::remove_file(&staging);
                self.io("write", &f.path, e)
            })?;
        }
        Ok(())
    }

    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("read", path, e)),
        }
    }
}
