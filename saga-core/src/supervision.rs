//! How the engine's long-running tasks (the recovery pass, the timer, the reply consumer) are
//! kept alive, and how an operator sees whether they are: a task that panics (a bug) is logged,
//! counted (`saga_engine_task_panics_total{task}`) and started again after a backoff that grows
//! while it keeps panicking; [`EngineHealth`] says whether the engine is running, which is what a
//! daemon's `/health` reports.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use serde::Serialize;

/// Panics in a row, without the task making progress in between, after which the engine counts
/// as not running. One panic and a restart is a blip the engine rides out; three in a row is a
/// crash loop that only a fix ends, and an operator must hear of it.
pub const CRASH_LOOP_PANICS: u32 = 3;

/// One of the engine's supervised tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EngineTask {
    /// The recovery pass after a start; done once it has looked at every active saga.
    Recovery,
    /// The timer loop: deadlines and retries.
    Timer,
    /// The reply consumer.
    Replies,
}

impl EngineTask {
    const ALL: [EngineTask; 3] = [EngineTask::Recovery, EngineTask::Timer, EngineTask::Replies];

    /// The stable name, in logs, metrics and health.
    pub(crate) fn name(self) -> &'static str {
        match self {
            EngineTask::Recovery => "recovery",
            EngineTask::Timer => "timer",
            EngineTask::Replies => "replies",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where a supervised task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// The engine is not running (`Engine::run_on` was not called, or returned).
    NotStarted,
    /// Running.
    Running,
    /// It panicked and waits for its restart.
    Restarting,
    /// It finished its work (the recovery pass, once done).
    Done,
}

/// How one of the engine's tasks is doing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskHealth {
    /// `recovery`, `timer` or `replies`.
    pub task: &'static str,
    /// Where it is.
    pub state: TaskState,
    /// Panics since it last made progress (a timer pass completed, a reply handled, the
    /// recovery pass finished).
    pub panics_in_a_row: u32,
    /// Panics since the engine was built.
    pub panics_total: u64,
    /// The latest panic's message.
    pub last_panic: Option<String>,
}

/// Whether the engine is running, and how each of its tasks is doing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EngineHealth {
    /// True when `Engine::run_on` runs and no task is in a crash loop
    /// ([`CRASH_LOOP_PANICS`] panics in a row).
    pub running: bool,
    /// Every task.
    pub tasks: Vec<TaskHealth>,
}

/// What the supervisor knows of the tasks; shared by the engine and its tasks.
pub(crate) struct Board {
    inner: Mutex<Inner>,
}

struct Inner {
    /// `run_on` calls in progress.
    runs: u32,
    tasks: Vec<TaskHealth>,
}

impl Default for Board {
    fn default() -> Self {
        let tasks = EngineTask::ALL
            .iter()
            .map(|t| TaskHealth {
                task: t.name(),
                state: TaskState::NotStarted,
                panics_in_a_row: 0,
                panics_total: 0,
                last_panic: None,
            })
            .collect();
        Self { inner: Mutex::new(Inner { runs: 0, tasks }) }
    }
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain counters behind the lock: nothing can be left half-written by a panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `run_on` started; the returned guard says when it ends (returned, dropped or panicked).
    pub(crate) fn run(&self) -> RunGuard<'_> {
        self.lock().runs += 1;
        RunGuard { board: self }
    }

    pub(crate) fn set(&self, task: EngineTask, state: TaskState) {
        self.lock().tasks[task.index()].state = state;
    }

    /// The task panicked: returns its panics in a row, this one included.
    pub(crate) fn panicked(&self, task: EngineTask, message: &str) -> u32 {
        let mut inner = self.lock();
        let t = &mut inner.tasks[task.index()];
        t.state = TaskState::Restarting;
        t.panics_in_a_row += 1;
        t.panics_total += 1;
        t.last_panic = Some(message.to_owned());
        t.panics_in_a_row
    }

    /// The task did a unit of work: whatever it panicked on before is behind it.
    pub(crate) fn progress(&self, task: EngineTask) {
        let mut inner = self.lock();
        let t = &mut inner.tasks[task.index()];
        if t.panics_in_a_row > 0 {
            tracing::info!(task = task.name(), panics = t.panics_in_a_row, "engine task healthy again");
            t.panics_in_a_row = 0;
        }
    }

    pub(crate) fn health(&self) -> EngineHealth {
        let inner = self.lock();
        let running = inner.runs > 0
            && inner.tasks.iter().all(|t| t.state != TaskState::NotStarted && t.panics_in_a_row < CRASH_LOOP_PANICS);
        EngineHealth { running, tasks: inner.tasks.clone() }
    }
}

/// Marks the end of a `run_on` when dropped.
pub(crate) struct RunGuard<'a> {
    board: &'a Board,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        let mut inner = self.board.lock();
        inner.runs = inner.runs.saturating_sub(1);
        if inner.runs == 0 {
            for t in &mut inner.tasks {
                t.state = TaskState::NotStarted;
            }
        }
    }
}

/// A spawned task aborted when its handle is dropped: a supervisor dropped at shutdown takes
/// its task with it.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The message of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
/// Runs a future, turning a panic inside it into `Err(message)`: one saga's bug must not take
/// the whole timer or recovery pass with it.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}
