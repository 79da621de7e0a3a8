//! Map and parallel: [`Context::map`] runs a function over items, [`Context::parallel`] runs
//! a list of branches, each item or branch in a child context of its own, under a
//! concurrency bound and a [`CompletionConfig`]; both return a [`BatchResult`]. Owns the
//! call sequence `batch-start`, (`branch-start`, the branch, `context-succeed` /
//! `context-fail`)*, `batch-finish`, and the typed view of the host's batch outcome. Holds
//! no journal and evaluates no policy: the host answers which branches run and when the
//! batch is complete.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::{decode, round_trip, Context, Name};
use crate::error::Error;
use crate::host;
use crate::wit;

/// The error type of a map or parallel whose configuration is invalid (`max_concurrency` of
/// 0, a failure percentage outside 0 to 100).
pub const INVALID_CONFIG: &str = "InvalidConfig";

/// When a map or parallel completes before every item ran (AWS `CompletionConfig`).
///
/// The default runs every item and tolerates every failure: the failures are in the
/// [`BatchResult`]. The batch completes early (starting no more items) once
/// `min_successful` items succeeded, or once more items failed than
/// `tolerated_failure_count`, or once the failed items are more than
/// `tolerated_failure_percentage` percent of all items.
///
/// ```
/// use durable_sdk::CompletionConfig;
/// let fail_fast = CompletionConfig::all_successful();
/// let first = CompletionConfig::first_successful();
/// let mostly = CompletionConfig::default().tolerated_failure_percentage(10.0);
/// # let _ = (fail_fast, first, mostly);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompletionConfig {
    min_successful: Option<u32>,
    tolerated_failure_count: Option<u32>,
    tolerated_failure_percentage: Option<f64>,
}

impl CompletionConfig {
    /// Every item runs, failures are tolerated (the default).
    pub fn all_completed() -> Self {
        Self::default()
    }

    /// Complete at the first failure (tolerated failure count 0).
    pub fn all_successful() -> Self {
        Self::default().tolerated_failure_count(0)
    }

    /// Complete at the first success.
    pub fn first_successful() -> Self {
        Self::default().min_successful(1)
    }

    /// Complete as soon as `n` items succeeded.
    pub fn min_successful(mut self, n: u32) -> Self {
        self.min_successful = Some(n);
        self
    }

    /// Complete once more than `n` items failed.
    pub fn tolerated_failure_count(mut self, n: u32) -> Self {
        self.tolerated_failure_count = Some(n);
        self
    }

    /// Complete once the failed items are more than `percent` (0 to 100) of all items.
    pub fn tolerated_failure_percentage(mut self, percent: f64) -> Self {
        self.tolerated_failure_percentage = Some(percent);
        self
    }

    fn to_wit(&self) -> wit::CompletionConfig {
        wit::CompletionConfig {
            min_successful: self.min_successful,
            tolerated_failure_count: self.tolerated_failure_count,
            tolerated_failure_percentage: self.tolerated_failure_percentage,
        }
    }
}

/// Names an iteration from its item and index.
type ItemNamer<T> = Box<dyn Fn(&T, usize) -> String>;

/// A branch's function.
type BranchBody<'a, R> = Box<dyn FnOnce(&mut Context) -> Result<R, Error> + 'a>;

/// How [`Context::map`] runs: concurrency, completion and the name of each iteration.
pub struct MapConfig<T> {
    max_concurrency: Option<u32>,
    completion: CompletionConfig,
    item_namer: Option<ItemNamer<T>>,
}

impl<T> Default for MapConfig<T> {
    fn default() -> Self {
        Self {
            max_concurrency: None,
            completion: CompletionConfig::default(),
            item_namer: None,
        }
    }
}

impl<T> MapConfig<T> {
    /// At most `n` items run at once (at least 1; the default is no bound). This host runs
    /// the items of one execution one after another, so any bound holds.
    pub fn max_concurrency(mut self, n: u32) -> Self {
        self.max_concurrency = Some(n);
        self
    }

    /// When the map completes (default: every item runs).
    pub fn completion(mut self, completion: CompletionConfig) -> Self {
        self.completion = completion;
        self
    }

    /// Names each iteration (shown in history, compared on replay) from its item and index.
    pub fn item_namer(mut self, namer: impl Fn(&T, usize) -> String + 'static) -> Self {
        self.item_namer = Some(Box::new(namer));
        self
    }
}

/// How [`Context::parallel`] runs: concurrency and completion.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParallelConfig {
    max_concurrency: Option<u32>,
    completion: CompletionConfig,
}

impl ParallelConfig {
    /// At most `n` branches run at once (at least 1; the default is no bound).
    pub fn max_concurrency(mut self, n: u32) -> Self {
        self.max_concurrency = Some(n);
        self
    }

    /// When the parallel completes (default: every branch runs).
    pub fn completion(mut self, completion: CompletionConfig) -> Self {
        self.completion = completion;
        self
    }
}

/// One branch of [`Context::parallel`]: a function of its own child context, optionally
/// named (the name is shown in history and compared on replay).
pub struct Branch<'a, R> {
    name: Option<String>,
    body: BranchBody<'a, R>,
}

impl<'a, R> Branch<'a, R> {
    /// An unnamed branch.
    pub fn new(body: impl FnOnce(&mut Context) -> Result<R, Error> + 'a) -> Self {
        Self {
            name: None,
            body: Box::new(body),
        }
    }

    /// A named branch.
    pub fn named(
        name: impl Into<String>,
        body: impl FnOnce(&mut Context) -> Result<R, Error> + 'a,
    ) -> Self {
        Self {
            name: Some(name.into()),
            body: Box::new(body),
        }
    }
}

/// The status of one item of a [`BatchResult`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchItemStatus {
    /// It returned a value.
    Succeeded,
    /// It returned an error.
    Failed,
    /// It started and had not completed when the batch completed.
    Started,
}

impl BatchItemStatus {
    /// The AWS name: `SUCCEEDED`, `FAILED`, `STARTED`.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchItemStatus::Succeeded => "SUCCEEDED",
            BatchItemStatus::Failed => "FAILED",
            BatchItemStatus::Started => "STARTED",
        }
    }
}

/// Why a batch completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionReason {
    /// Every item completed.
    AllCompleted,
    /// `min_successful` items succeeded.
    MinSuccessfulReached,
    /// More items failed than the completion config tolerates.
    FailureToleranceExceeded,
}

impl CompletionReason {
    /// The AWS name: `ALL_COMPLETED`, `MIN_SUCCESSFUL_REACHED`, `FAILURE_TOLERANCE_EXCEEDED`.
    pub fn as_str(self) -> &'static str {
        match self {
            CompletionReason::AllCompleted => "ALL_COMPLETED",
            CompletionReason::MinSuccessfulReached => "MIN_SUCCESSFUL_REACHED",
            CompletionReason::FailureToleranceExceeded => "FAILURE_TOLERANCE_EXCEEDED",
        }
    }
}

/// One item (or branch) that started.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem<R> {
    /// Its index among the items or branches.
    pub index: usize,
    /// How it ended.
    pub status: BatchItemStatus,
    /// Its result, when it succeeded.
    pub result: Option<R>,
    /// Its error, when it failed.
    pub error: Option<Error>,
}

/// What a map or parallel returns: each item that started, in index order, and why the
/// batch completed. An item never started (the batch completed early) is not listed, so
/// [`total_count`](Self::total_count) counts the items that started.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResult<R> {
    /// The items that started, by index.
    pub items: Vec<BatchItem<R>>,
    /// Why the batch completed.
    pub completion_reason: CompletionReason,
}

impl<R> BatchResult<R> {
    /// The results of the items that succeeded, in index order.
    pub fn results(&self) -> Vec<&R> {
        self.items
            .iter()
            .filter_map(|i| i.result.as_ref())
            .collect()
    }

    /// The results of the items that succeeded, in index order, by value.
    pub fn into_results(self) -> Vec<R> {
        self.items.into_iter().filter_map(|i| i.result).collect()
    }

    /// The errors of the items that failed, in index order.
    pub fn errors(&self) -> Vec<&Error> {
        self.items.iter().filter_map(|i| i.error.as_ref()).collect()
    }

    /// The items that succeeded.
    pub fn succeeded(&self) -> Vec<&BatchItem<R>> {
        self.with(BatchItemStatus::Succeeded)
    }

    /// The items that failed.
    pub fn failed(&self) -> Vec<&BatchItem<R>> {
        self.with(BatchItemStatus::Failed)
    }

    /// The items that started and had not completed.
    pub fn started(&self) -> Vec<&BatchItem<R>> {
        self.with(BatchItemStatus::Started)
    }

    fn with(&self, status: BatchItemStatus) -> Vec<&BatchItem<R>> {
        self.items.iter().filter(|i| i.status == status).collect()
    }

    /// Whether any item failed.
    pub fn has_failure(&self) -> bool {
        self.items
            .iter()
            .any(|i| i.status == BatchItemStatus::Failed)
    }

    /// `Failed` when any item failed, else `Succeeded` (AWS `status`).
    pub fn status(&self) -> BatchItemStatus {
        if self.has_failure() {
            BatchItemStatus::Failed
        } else {
            BatchItemStatus::Succeeded
        }
    }

    /// How many items succeeded.
    pub fn success_count(&self) -> usize {
        self.succeeded().len()
    }

    /// How many items failed.
    pub fn failure_count(&self) -> usize {
        self.failed().len()
    }

    /// How many items started and had not completed.
    pub fn started_count(&self) -> usize {
        self.started().len()
    }

    /// How many items started.
    pub fn total_count(&self) -> usize {
        self.items.len()
    }

    /// The first failed item's error (by index), if any: `batch.throw_if_error()?`.
    pub fn throw_if_error(&self) -> Result<(), Error> {
        match self.errors().first() {
            Some(e) => Err((*e).clone()),
            None => Ok(()),
        }
    }

    /// The results in index order, or the first error.
    pub fn into_result(self) -> Result<Vec<R>, Error> {
        self.throw_if_error()?;
        Ok(self.into_results())
    }
}

impl<R: DeserializeOwned> BatchResult<R> {
    /// The host's outcome, with each result deserialized (the same on the first run and on
    /// every replay). A result that does not deserialize makes its item failed.
    fn from_wit(outcome: wit::BatchOutcome) -> Self {
        let items = outcome
            .items
            .into_iter()
            .map(|item| {
                let mut out = BatchItem {
                    index: item.index as usize,
                    status: BatchItemStatus::Started,
                    result: None,
                    error: item.error.map(Error::from),
                };
                match item.status {
                    wit::BatchItemStatus::Succeeded => {
                        match decode(item.result.as_deref().unwrap_or("null"), "branch result") {
                            Ok(r) => {
                                out.status = BatchItemStatus::Succeeded;
                                out.result = Some(r);
                            }
                            Err(e) => {
                                out.status = BatchItemStatus::Failed;
                                out.error = Some(e);
                            }
                        }
                    }
                    wit::BatchItemStatus::Failed => out.status = BatchItemStatus::Failed,
                    wit::BatchItemStatus::Started => {}
                }
                out
            })
            .collect();
        let completion_reason = match outcome.reason {
            wit::CompletionReason::AllCompleted => CompletionReason::AllCompleted,
            wit::CompletionReason::MinSuccessfulReached => CompletionReason::MinSuccessfulReached,
            wit::CompletionReason::FailureToleranceExceeded => {
                CompletionReason::FailureToleranceExceeded
            }
        };
        Self {
            items,
            completion_reason,
        }
    }
}

/// What a batch is, for the host.
struct Batch<'n> {
    name: Name<'n>,
    kind: wit::BatchKind,
    count: usize,
    max_concurrency: Option<u32>,
    completion: CompletionConfig,
}

impl Context {
    /// Runs `f` over `items`, each item in a child context of its own (history: a context
    /// of sub type `Map`, an iteration `MapIteration` per item), and returns every item's
    /// outcome in item order. `f` gets the iteration's context, the item and its index; an
    /// error from it fails that item only. What completes the map early is `config`'s
    /// [`CompletionConfig`] (by default every item runs). On replay finished items return
    /// their recorded outcome without running `f`; a finished map runs nothing.
    ///
    /// Items run one after another in this instance (a wait inside an item unloads the
    /// whole execution until it is due); the host decides which items an instance runs, so
    /// a host that runs them on separate instances needs no change here.
    ///
    /// ```no_run
    /// # fn demo(ctx: &mut durable_sdk::Context) -> Result<(), durable_sdk::Error> {
    /// use durable_sdk::{CompletionConfig, MapConfig};
    /// let users = vec!["ada".to_string(), "grace".to_string()];
    /// let config = MapConfig::default()
    ///     .max_concurrency(10)
    ///     .completion(CompletionConfig::default().tolerated_failure_count(1));
    /// let batch = ctx.map("welcome", users, config, |ctx, user, _index| {
    ///     ctx.step("send", |_| Ok(format!("sent to {user}")))
    /// })?;
    /// let sent: Vec<String> = batch.into_result()?; // or look at batch.errors()
    /// # let _ = sent; Ok(()) }
    /// ```
    pub fn map<'n, T, R, F>(
        &mut self,
        name: impl Into<Name<'n>>,
        items: Vec<T>,
        config: MapConfig<T>,
        mut f: F,
    ) -> Result<BatchResult<R>, Error>
    where
        R: Serialize + DeserializeOwned,
        F: FnMut(&mut Context, T, usize) -> Result<R, Error>,
    {
        let names: Vec<Option<String>> = match &config.item_namer {
            Some(namer) => items
                .iter()
                .enumerate()
                .map(|(i, t)| Some(namer(t, i)))
                .collect(),
            None => vec![None; items.len()],
        };
        let mut items: Vec<Option<T>> = items.into_iter().map(Some).collect();
        let batch = Batch {
            name: name.into(),
            kind: wit::BatchKind::Map,
            count: items.len(),
            max_concurrency: config.max_concurrency,
            completion: config.completion,
        };
        self.run_batch(batch, &names, |ctx, i| match items[i].take() {
            Some(item) => f(ctx, item, i),
            None => Err(Error::new(INVALID_CONFIG, format!("item {i} ran twice"))),
        })
    }

    /// Runs `branches`, each in a child context of its own (history: a context of sub
    /// type `Parallel`, a `ParallelBranch` per branch), and returns every branch's outcome
    /// in branch order. Completion, concurrency and replay as for [`map`](Self::map).
    /// Branches returning different types can return a `serde_json::Value`.
    ///
    /// ```no_run
    /// # fn demo(ctx: &mut durable_sdk::Context) -> Result<(), durable_sdk::Error> {
    /// use durable_sdk::{Branch, ParallelConfig};
    /// let batch = ctx.parallel(
    ///     "lookups",
    ///     vec![
    ///         Branch::named("price", |ctx| ctx.step("fetch", |_| Ok(42u32))),
    ///         Branch::named("stock", |ctx| ctx.step("fetch", |_| Ok(7u32))),
    ///     ],
    ///     ParallelConfig::default(),
    /// )?;
    /// batch.throw_if_error()?;
    /// let total: u32 = batch.results().into_iter().sum();
    /// # let _ = total; Ok(()) }
    /// ```
    pub fn parallel<'n, R>(
        &mut self,
        name: impl Into<Name<'n>>,
        branches: Vec<Branch<'_, R>>,
        config: ParallelConfig,
    ) -> Result<BatchResult<R>, Error>
    where
        R: Serialize + DeserializeOwned,
    {
        let names: Vec<Option<String>> = branches.iter().map(|b| b.name.clone()).collect();
        let mut bodies: Vec<_> = branches.into_iter().map(|b| Some(b.body)).collect();
        let batch = Batch {
            name: name.into(),
            kind: wit::BatchKind::Parallel,
            count: bodies.len(),
            max_concurrency: config.max_concurrency,
            completion: config.completion,
        };
        self.run_batch(batch, &names, |ctx, i| match bodies[i].take() {
            Some(body) => body(ctx),
            None => Err(Error::new(INVALID_CONFIG, format!("branch {i} ran twice"))),
        })
    }

    /// batch-start; then either the recorded outcome, or each branch the host names
    /// (branch-start, the branch, context-succeed / context-fail) and batch-finish.
    fn run_batch<R>(
        &mut self,
        batch: Batch<'_>,
        names: &[Option<String>],
        mut run: impl FnMut(&mut Context, usize) -> Result<R, Error>,
    ) -> Result<BatchResult<R>, Error>
    where
        R: Serialize + DeserializeOwned,
    {
        if batch.max_concurrency == Some(0) {
            return Err(Error::new(
                INVALID_CONFIG,
                "max_concurrency must be at least 1",
            ));
        }
        if let Some(p) = batch.completion.tolerated_failure_percentage {
            if !(0.0..=100.0).contains(&p) {
                return Err(Error::new(
                    INVALID_CONFIG,
                    format!("tolerated_failure_percentage {p} is not between 0 and 100"),
                ));
            }
        }
        let count = u32::try_from(batch.count)
            .map_err(|_| Error::new(INVALID_CONFIG, "more than 2^32 - 1 items"))?;
        let options = wit::BatchOptions {
            kind: batch.kind,
            count,
            max_concurrency: batch.max_concurrency,
            completion: batch.completion.to_wit(),
        };
        let (id, state) = host::batch_start(self.parent(), batch.name.as_deref(), options);
        let outcome = match state {
            wit::BatchState::Completed(outcome) => outcome,
            wit::BatchState::Run(indices) => {
                for index in indices {
                    let name = names.get(index as usize).cloned().flatten();
                    let (branch, state) = host::branch_start(&id, index, name.as_deref());
                    if !matches!(state, wit::BranchState::Run) {
                        continue;
                    }
                    let mut child = Context::child(branch.clone());
                    match run(&mut child, index as usize)
                        .and_then(|v| round_trip(&v, "branch result"))
                    {
                        // A refused value (too large) is recorded as the branch's failure.
                        Ok((json, _)) => drop(host::context_succeed(&branch, &json)),
                        Err(error) => host::context_fail(&branch, &error.to_wit()),
                    }
                }
                host::batch_finish(&id)
            }
        };
        Ok(BatchResult::from_wit(outcome))
    }
}
