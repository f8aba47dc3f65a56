//! One execution environment: a child process of the function's binary and the Runtime API
//! endpoint it polls, on its own loopback port.
//!
//! The environment holds at most one invocation at a time (`Slot`). Whoever settles it first —
//! the function's response or error on the Runtime API, the process exiting, or the invoker
//! giving up at the deadline — takes it out of the slot, so an invocation completes exactly once.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex, MutexGuard},
};

use hyper::body::Bytes;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::{Notify, oneshot},
};

use super::{log::LogSink, runtime_api};
use crate::http::{self, ServerTask};

/// Why an environment could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot open a Runtime API port: {0}")]
    Listen(#[source] std::io::Error),
    #[error("cannot start {}: {source}", binary.display())]
    Start {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How the invocation held by an environment ended, as seen from the environment.
#[derive(Debug)]
pub enum Completion {
    /// `POST /runtime/invocation/{id}/response`.
    Response(Bytes),
    /// `POST /runtime/invocation/{id}/error`: the function's error JSON.
    Error(Bytes),
    /// `POST /runtime/init/error`: the environment is discarded.
    InitError(Bytes),
    /// The process exited (or was killed) before answering; the text says how.
    Exited(String),
}

/// An invocation handed to an environment.
#[derive(Debug)]
pub struct Assignment {
    pub request_id: String,
    pub payload: Bytes,
    /// Epoch milliseconds, sent as `Lambda-Runtime-Deadline-Ms`.
    pub deadline_ms: u128,
    pub trace_id: String,
}

/// An invocation as the Runtime API hands it out on `/next`.
#[derive(Debug)]
pub struct Event {
    pub request_id: String,
    pub payload: Bytes,
    pub deadline_ms: u128,
    pub trace_id: String,
    pub function_arn: String,
}

#[derive(Debug, Default)]
struct Slot {
    /// The invocation in progress; `None` when the environment is idle.
    current: Option<InFlight>,
    /// Set once the environment is being torn down: it takes no new invocation.
    dead: bool,
}

#[derive(Debug)]
struct InFlight {
    request_id: String,
    /// Taken by the first `/next` that hands it out.
    event: Option<Event>,
    reply: oneshot::Sender<Completion>,
}

/// State shared between the environment, its Runtime API and its process watcher.
#[derive(Debug)]
pub(super) struct Channel {
    function_arn: String,
    slot: Mutex<Slot>,
    /// Wakes `/next` long-polls when an invocation is assigned.
    assigned: Notify,
    /// Tells the watcher to SIGKILL the process.
    kill: Notify,
}

/// Why the Runtime API refused a completion.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompletionError {
    #[error("request id {0} is not the invocation in progress")]
    UnknownRequest(String),
}

impl Channel {
    fn new(function_arn: String) -> Self {
        Self {
            function_arn,
            slot: Mutex::default(),
            assigned: Notify::new(),
            kill: Notify::new(),
        }
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until an invocation is assigned and not yet handed out, and hands it out.
    pub(super) async fn next_event(&self) -> Event {
        loop {
            let assigned = self.assigned.notified();
            tokio::pin!(assigned);
            assigned.as_mut().enable();
            if let Some(event) = self
                .slot()
                .current
                .as_mut()
                .and_then(|current| current.event.take())
            {
                return event;
            }
            assigned.await;
        }
    }

    /// Settles the invocation `request_id` with `completion`.
    pub(super) fn complete(
        &self,
        request_id: &str,
        completion: Completion,
    ) -> Result<(), CompletionError> {
        let mut slot = self.slot();
        match slot.current.take() {
            Some(current) if current.request_id == request_id => {
                // The invoker may have stopped waiting (deadline); nothing to tell it then.
                let _ = current.reply.send(completion);
                Ok(())
            }
            other => {
                slot.current = other;
                Err(CompletionError::UnknownRequest(request_id.to_owned()))
            }
        }
    }

    /// The function reported an initialisation error: fail what it holds and discard it.
    pub(super) fn init_failed(&self, body: Bytes) {
        let current = {
            let mut slot = self.slot();
            slot.dead = true;
            slot.current.take()
        };
        if let Some(current) = current {
            let _ = current.reply.send(Completion::InitError(body));
        }
        self.kill.notify_one();
    }

    /// The process is gone: fail what it held and take nothing more.
    fn exited(&self, how: String) {
        let current = {
            let mut slot = self.slot();
            slot.dead = true;
            slot.current.take()
        };
        if let Some(current) = current {
            let _ = current.reply.send(Completion::Exited(how));
        }
    }
}

/// A running execution environment. Dropping it closes its Runtime API; the process is killed
/// through [`Environment::kill`] (or when the runtime exits, as a last resort).
#[derive(Debug)]
pub struct Environment {
    pub id: String,
    channel: Arc<Channel>,
    _runtime_api: ServerTask,
}

/// What the runtime tells a new process besides its inherited environment.
pub(super) struct Launch<'a> {
    pub binary: &'a std::path::Path,
    pub function_arn: String,
    pub variables: &'a BTreeMap<String, String>,
    pub log_stream: String,
    pub log: LogSink,
}

impl Environment {
    /// Starts the process and its Runtime API. `on_exit` runs once the process has exited and
    /// its invocation (if any) has been failed.
    pub(super) async fn spawn(
        id: String,
        launch: Launch<'_>,
        on_exit: impl FnOnce() + Send + 'static,
    ) -> Result<Arc<Self>, SpawnError> {
        let listener = http::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(SpawnError::Listen)?;
        let api_addr = listener.local_addr().map_err(SpawnError::Listen)?;
        let channel = Arc::new(Channel::new(launch.function_arn));
        let runtime_api = http::serve(listener, {
            let channel = Arc::clone(&channel);
            move |request| runtime_api::handle(Arc::clone(&channel), request)
        });

        let task_root = launch.binary.parent().unwrap_or(std::path::Path::new("/"));
        let mut child = Command::new(launch.binary)
            .env_clear()
            .envs(launch.variables)
            .env("AWS_LAMBDA_RUNTIME_API", api_addr.to_string())
            .env("AWS_LAMBDA_LOG_STREAM_NAME", &launch.log_stream)
            .current_dir(task_root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SpawnError::Start {
                binary: launch.binary.to_owned(),
                source,
            })?;
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(pump(stdout, launch.log.clone(), id.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(pump(stderr, launch.log.clone(), id.clone()));
        }
        tokio::spawn(watch(
            child,
            Arc::clone(&channel),
            launch.log,
            id.clone(),
            on_exit,
        ));
        Ok(Arc::new(Self {
            id,
            channel,
            _runtime_api: runtime_api,
        }))
    }

    /// Hands `assignment` to the environment. Returns where its completion will arrive, or
    /// `None` if the environment is dead or already busy.
    pub fn assign(&self, assignment: Assignment) -> Option<oneshot::Receiver<Completion>> {
        let (reply, completion) = oneshot::channel();
        {
            let mut slot = self.channel.slot();
            if slot.dead || slot.current.is_some() {
                return None;
            }
            slot.current = Some(InFlight {
                request_id: assignment.request_id.clone(),
                event: Some(Event {
                    request_id: assignment.request_id,
                    payload: assignment.payload,
                    deadline_ms: assignment.deadline_ms,
                    trace_id: assignment.trace_id,
                    function_arn: self.channel.function_arn.clone(),
                }),
                reply,
            });
        }
        self.channel.assigned.notify_waiters();
        Some(completion)
    }

    /// SIGKILLs the process and drops whatever it holds without answering it (the invoker
    /// decides what a killed invocation means); the environment takes nothing more.
    pub fn kill(&self) {
        {
            let mut slot = self.channel.slot();
            slot.dead = true;
        }
        self.channel.kill.notify_one();
    }

    /// Forgets the invocation in progress without completing it (after a deadline passed).
    pub fn abandon(&self) {
        self.channel.slot().current = None;
    }

    pub fn is_busy(&self) -> bool {
        self.channel.slot().current.is_some()
    }

    pub fn is_dead(&self) -> bool {
        self.channel.slot().dead
    }
}

/// Waits for the process to exit (or kills it when asked), then fails its invocation.
async fn watch(
    mut child: Child,
    channel: Arc<Channel>,
    log: LogSink,
    id: String,
    on_exit: impl FnOnce(),
) {
    let status = tokio::select! {
        status = child.wait() => status,
        () = channel.kill.notified() => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    let how = match status {
        Ok(status) => exit_description(status),
        Err(err) => format!("cannot wait for the process: {err}"),
    };
    log.line(&id, &format!("Runtime exited: {how}"));
    channel.exited(format!("Runtime exited with error: {how}"));
    on_exit();
}

/// `exit status 1`, `signal: 9 (SIGKILL)`: what Lambda's `Runtime.ExitError` message says.
fn exit_description(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(9)) => "signal: killed".to_owned(),
        (None, Some(signal)) => format!("signal: {signal}"),
        (None, None) => status.to_string(),
    }
}

/// Copies a child's output to the function log, line by line.
async fn pump(output: impl AsyncRead + Unpin, log: LogSink, id: String) {
    let mut lines = BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        log.line(&id, &line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(channel: &Channel, request_id: &str) -> oneshot::Receiver<Completion> {
        let (reply, completion) = oneshot::channel();
        channel.slot().current = Some(InFlight {
            request_id: request_id.into(),
            event: Some(Event {
                request_id: request_id.into(),
                payload: Bytes::from_static(b"{}"),
                deadline_ms: 1,
                trace_id: "t".into(),
                function_arn: "arn".into(),
            }),
            reply,
        });
        channel.assigned.notify_waiters();
        completion
    }

    #[tokio::test]
    async fn next_waits_for_an_assignment_and_hands_it_out_once() {
        let channel = Arc::new(Channel::new("arn".into()));
        let waiting = tokio::spawn({
            let channel = Arc::clone(&channel);
            async move { channel.next_event().await.request_id }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "nothing assigned yet");
        let _completion = in_flight(&channel, "r1");
        assert_eq!(waiting.await.unwrap(), "r1");
        let again =
            tokio::time::timeout(std::time::Duration::from_millis(20), channel.next_event());
        assert!(
            again.await.is_err(),
            "the same event is not handed out twice"
        );
    }

    #[tokio::test]
    async fn only_the_invocation_in_progress_can_be_completed() {
        let channel = Channel::new("arn".into());
        let completion = in_flight(&channel, "r1");
        assert_eq!(
            channel.complete("other", Completion::Response(Bytes::new())),
            Err(CompletionError::UnknownRequest("other".into()))
        );
        channel
            .complete("r1", Completion::Response(Bytes::from_static(b"ok")))
            .unwrap();
        assert!(matches!(completion.await, Ok(Completion::Response(body)) if body == "ok"));
        assert!(
            channel
                .complete("r1", Completion::Error(Bytes::new()))
                .is_err(),
            "completes once"
        );
    }

    #[tokio::test]
    async fn an_exit_fails_the_invocation_and_marks_the_environment_dead() {
        let channel = Channel::new("arn".into());
        let completion = in_flight(&channel, "r1");
        channel.exited("Runtime exited with error: exit status 1".into());
        assert!(
            matches!(completion.await, Ok(Completion::Exited(how)) if how.ends_with("status 1"))
        );
        assert!(channel.slot().dead);
    }
}
