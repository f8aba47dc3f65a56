//! Where a function's output goes: `<log-dir>/<function>.log`, or the runtime's own stderr when
//! no log directory is given. Each line carries the id of the environment that wrote it, so the
//! interleaved output of concurrent environments can be told apart, as in CloudWatch streams.

use std::{
    fs::OpenOptions,
    io::Write,
    path::Path,
    sync::{Arc, Mutex},
};

/// A shared, line-oriented writer for one function's logs.
#[derive(Clone)]
pub struct LogSink {
    /// Put before the environment id: empty in a per-function file, the function's name on stderr.
    prefix: String,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSink")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl LogSink {
    /// Appends to `<dir>/<function>.log`, or writes to stderr when `dir` is `None`.
    pub fn open(dir: Option<&Path>, function: &str) -> std::io::Result<Self> {
        let (prefix, out): (String, Box<dyn Write + Send>) = match dir {
            Some(dir) => {
                let path = dir.join(format!("{function}.log"));
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|err| {
                        std::io::Error::new(
                            err.kind(),
                            format!("cannot open log {}: {err}", path.display()),
                        )
                    })?;
                (String::new(), Box::new(file))
            }
            None => (format!("{function} "), Box::new(std::io::stderr())),
        };
        Ok(Self {
            prefix,
            out: Arc::new(Mutex::new(out)),
        })
    }

    /// Writes `line` as `[<environment>] line`. Logging never fails an invocation: write errors
    /// are dropped.
    pub fn line(&self, environment: &str, line: &str) {
        let text = format!("{}[{environment}] {}\n", self.prefix, line.trim_end());
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_land_in_the_function_file_with_the_environment_id() {
        let dir =
            std::env::temp_dir().join(format!("proxyharvest-local-log-{}", crate::ids::hex(8)));
        std::fs::create_dir_all(&dir).unwrap();
        let sink = LogSink::open(Some(&dir), "fn-a").unwrap();
        sink.line("env1", "hello\n");
        sink.clone().line("env2", "world");
        let text = std::fs::read_to_string(dir.join("fn-a.log")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(text, "[env1] hello\n[env2] world\n");
    }
}
