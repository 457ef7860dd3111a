//! The scheduler (SPEC A2–A4), as a worker: every interval (default 300 s) it runs every
//! user's job with bounded concurrency; a failing user is retried with exponential backoff
//! (or after the `Retry-After` a throttled side asked for) and reported, and never holds the
//! others up; `run_now` runs one user or all on demand. Shutdown is explicit (a `watch`
//! channel), and every wait is a tokio timer, so tests drive it on paused time against
//! in-memory jobs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{watch, Semaphore};

/// A job's failure: what happened and, when a side throttled, how long it asked to wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobError {
    pub message: String,
    pub retry_after: Option<Duration>,
}

/// A boxed future, for the object-safe [`Jobs`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the scheduler runs.
pub trait Jobs: Send + Sync + 'static {
    /// The users to run this cycle.
    fn users(&self) -> BoxFuture<'_, Result<Vec<String>, JobError>>;
    /// Run one user's job once.
    fn run<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<(), JobError>>;
    /// The interval between cycles when it can change while running (else the schedule's).
    fn interval(&self) -> Option<Duration> {
        None
    }
}

/// The scheduler's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// Seconds between the starts of two cycles.
    pub interval_secs: u64,
    /// Users run at once.
    pub concurrency: usize,
    /// Retries of a failing user within a cycle.
    pub retries: u32,
    /// The first backoff in seconds, doubled each retry (with up to a quarter of jitter).
    pub backoff_secs: u64,
    /// The longest wait between retries, in seconds (a longer `Retry-After` ends the cycle
    /// for that user; the next cycle tries again).
    pub max_wait_secs: u64,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule { interval_secs: 300, concurrency: 4, retries: 3, backoff_secs: 5, max_wait_secs: 300 }
    }
}

/// How one user's job went in a cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserOutcome {
    pub user: String,
    pub attempts: u32,
    /// The last error, when every attempt failed.
    pub error: Option<String>,
}

/// One cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CycleReport {
    pub users: Vec<UserOutcome>,
    /// Listing the users failed: nothing ran.
    pub error: Option<String>,
}

impl CycleReport {
    /// Users whose every attempt failed.
    pub fn failed(&self) -> impl Iterator<Item = &UserOutcome> {
        self.users.iter().filter(|u| u.error.is_some())
    }
}

/// The scheduler.
#[derive(Clone)]
pub struct Scheduler {
    jobs: Arc<dyn Jobs>,
    schedule: Schedule,
}

impl Scheduler {
    pub fn new(jobs: Arc<dyn Jobs>, schedule: Schedule) -> Scheduler {
        Scheduler { jobs, schedule }
    }

    /// Run cycles every interval until `shutdown` turns true (or its sender goes); a cycle
    /// under way finishes first. Each cycle's report goes to `reports` when given.
    pub async fn run(
        &self,
        mut shutdown: watch::Receiver<bool>,
        reports: Option<tokio::sync::mpsc::Sender<CycleReport>>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let interval = self
                .jobs
                .interval()
                .unwrap_or(Duration::from_secs(self.schedule.interval_secs))
                .max(Duration::from_secs(1));
            let started = tokio::time::Instant::now();
            let report = self.run_now(None).await;
            for failed in report.failed() {
                tracing::warn!(user = %failed.user, attempts = failed.attempts, error = ?failed.error, "user failed this cycle (SPEC A3)");
            }
            if let Some(tx) = &reports {
                let _ = tx.send(report).await;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(started + interval) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }

    /// Run one user (`Some`) or every user now (SPEC A4), `concurrency` at a time.
    pub async fn run_now(&self, only: Option<&str>) -> CycleReport {
        let users = match only {
            Some(u) => vec![u.to_string()],
            None => match self.list_users().await {
                Ok(users) => users,
                Err(e) => return CycleReport { users: Vec::new(), error: Some(e.message) },
            },
        };
        let permits = Arc::new(Semaphore::new(self.schedule.concurrency.max(1)));
        // (Each task takes a slot per attempt; see `run_user`.)
        let mut tasks = tokio::task::JoinSet::new();
        for (i, user) in users.into_iter().enumerate() {
            let (me, permits) = (self.clone(), permits.clone());
            tasks.spawn(async move { (i, me.run_user(user, &permits).await) });
        }
        let mut outcomes = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => tracing::error!(error = %e, "a user's job panicked or was cancelled"),
            }
        }
        outcomes.sort_by_key(|(i, _)| *i);
        CycleReport { users: outcomes.into_iter().map(|(_, o)| o).collect(), error: None }
    }

    /// The users, the listing retried like a user's job.
    async fn list_users(&self) -> Result<Vec<String>, JobError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.jobs.users().await {
                Ok(users) => return Ok(users),
                Err(e) => {
                    let wait = self.wait(&e, attempts, "");
                    match wait {
                        Some(wait) => tokio::time::sleep(wait).await,
                        None => return Err(e),
                    }
                }
            }
        }
    }

    /// How long to wait before attempt `attempts + 1`; `None`: give up this cycle.
    fn wait(&self, error: &JobError, attempts: u32, user: &str) -> Option<Duration> {
        let wait = match error.retry_after {
            Some(d) => d,
            None => backoff(Duration::from_secs(self.schedule.backoff_secs), attempts, user),
        };
        (attempts <= self.schedule.retries && wait <= Duration::from_secs(self.schedule.max_wait_secs)).then_some(wait)
    }

    /// One user's job, retried with backoff.
    /// A slot is held for each attempt only, never across a backoff, so users waiting to
    /// retry do not keep the others from running (SPEC A3).
    async fn run_user(&self, user: String, permits: &Semaphore) -> UserOutcome {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let outcome = {
                let _permit = permits.acquire().await;
                self.jobs.run(&user).await
            };
            let error = match outcome {
                Ok(()) => return UserOutcome { user, attempts, error: None },
                Err(e) => e,
            };
            let Some(wait) = self.wait(&error, attempts, &user) else {
                return UserOutcome { user, attempts, error: Some(error.message) };
            };
            tracing::info!(%user, attempts, wait_ms = wait.as_millis() as u64, error = %error.message, "retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

/// `base · 2^(attempt−1)`, plus up to a quarter of jitter spread by user and attempt so
/// users failing together do not retry in lockstep.
fn backoff(base: Duration, attempt: u32, user: &str) -> Duration {
    use std::hash::{Hash, Hasher};
    let d = base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (user, attempt).hash(&mut h);
    d + d.mul_f64((h.finish() % 1000) as f64 / 4000.0)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use tokio::time::Instant;

    use super::*;

    /// In-memory jobs: each run takes `took`; a user fails its first `failures[user]` runs.
    #[derive(Default)]
    struct Fake {
        users: Vec<String>,
        took: Duration,
        failures: Mutex<HashMap<String, (u32, Option<Duration>)>>,
        runs: Mutex<Vec<(String, Duration)>>,
        running: Mutex<(usize, usize)>,
        start: Mutex<Option<Instant>>,
    }

    impl Fake {
        fn new(users: &[&str], took: Duration) -> Arc<Fake> {
            Arc::new(Fake {
                users: users.iter().map(|u| u.to_string()).collect(),
                took,
                start: Mutex::new(Some(Instant::now())),
                ..Fake::default()
            })
        }
        fn fail(&self, user: &str, times: u32, retry_after: Option<Duration>) {
            self.failures.lock().unwrap().insert(user.to_string(), (times, retry_after));
        }
        fn runs_of(&self, user: &str) -> Vec<Duration> {
            self.runs.lock().unwrap().iter().filter(|(u, _)| u == user).map(|(_, t)| *t).collect()
        }
    }

    impl Jobs for Fake {
        fn users(&self) -> BoxFuture<'_, Result<Vec<String>, JobError>> {
            Box::pin(async { Ok(self.users.clone()) })
        }
        fn run<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<(), JobError>> {
            Box::pin(async move {
                let at = Instant::now() - self.start.lock().unwrap().unwrap();
                self.runs.lock().unwrap().push((user.to_string(), at));
                {
                    let mut r = self.running.lock().unwrap();
                    r.0 += 1;
                    r.1 = r.1.max(r.0);
                }
                tokio::time::sleep(self.took).await;
                self.running.lock().unwrap().0 -= 1;
                let mut failures = self.failures.lock().unwrap();
                match failures.get_mut(user) {
                    Some((n, retry_after)) if *n > 0 => {
                        *n -= 1;
                        Err(JobError { message: format!("{user} failed"), retry_after: *retry_after })
                    }
                    _ => Ok(()),
                }
            })
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[tokio::test(start_paused = true)]
    async fn a2_cycles_run_every_interval_with_bounded_concurrency_until_shutdown() {
        let fake = Fake::new(&["a", "b", "c", "d", "e", "f"], secs(10));
        let schedule = Schedule { concurrency: 2, ..Schedule::default() };
        let scheduler = Scheduler::new(fake.clone(), schedule);
        let (stop, shutdown) = watch::channel(false);
        let worker = tokio::spawn(async move { scheduler.run(shutdown, None).await });
        tokio::time::sleep(secs(3 * 300 + 1)).await;
        stop.send(true).unwrap();
        worker.await.unwrap();
        let starts = fake.runs_of("a");
        assert_eq!(starts, [secs(0), secs(300), secs(600), secs(900)], "one run per interval");
        assert_eq!(fake.running.lock().unwrap().1, 2, "never more than 2 at once");
        assert_eq!(fake.runs_of("f")[0], secs(20), "six users two at a time: the last pair starts at 20 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a3_a_failing_user_is_retried_with_backoff_and_never_holds_up_the_others() {
        let fake = Fake::new(&["bad", "good1", "good2"], secs(1));
        fake.fail("bad", 2, None);
        let scheduler = Scheduler::new(fake.clone(), Schedule::default());
        let report = scheduler.run_now(None).await;
        let bad = fake.runs_of("bad");
        assert_eq!(bad.len(), 3, "two failures, then success");
        let (first, second) = (bad[1] - bad[0] - secs(1), bad[2] - bad[1] - secs(1));
        assert!(first >= secs(5) && first <= Duration::from_millis(6_250), "5 s backoff: {first:?}");
        assert!(second >= secs(10) && second <= Duration::from_millis(12_500), "then 10 s: {second:?}");
        assert_eq!(fake.runs_of("good2"), [secs(0)], "the others ran at once");
        assert!(report.failed().next().is_none());
        assert_eq!(report.users[0].attempts, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a3_a_user_backing_off_does_not_keep_its_slot() {
        let fake = Fake::new(&["bad", "good"], secs(1));
        fake.fail("bad", 2, None);
        let schedule = Schedule { concurrency: 1, ..Schedule::default() };
        Scheduler::new(fake.clone(), schedule).run_now(None).await;
        assert_eq!(fake.runs_of("good"), [secs(1)], "good runs while bad waits out its 5 s backoff");
        assert_eq!(fake.runs_of("bad").len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a3_a_user_failing_every_retry_is_reported() {
        let fake = Fake::new(&["bad", "good"], secs(1));
        fake.fail("bad", 99, None);
        let report = Scheduler::new(fake.clone(), Schedule::default()).run_now(None).await;
        let failed: Vec<&UserOutcome> = report.failed().collect();
        assert_eq!(failed.len(), 1);
        assert_eq!((failed[0].user.as_str(), failed[0].attempts), ("bad", 4), "1 run + 3 retries");
        assert_eq!(failed[0].error.as_deref(), Some("bad failed"));
    }

    #[tokio::test(start_paused = true)]
    async fn a2_a_throttled_user_waits_what_the_side_asked() {
        let fake = Fake::new(&["busy"], secs(1));
        fake.fail("busy", 1, Some(secs(42)));
        Scheduler::new(fake.clone(), Schedule::default()).run_now(None).await;
        let runs = fake.runs_of("busy");
        assert_eq!(runs[1] - runs[0], secs(43), "the run took 1 s, then Retry-After 42 s");

        let fake = Fake::new(&["very-busy"], secs(1));
        fake.fail("very-busy", 1, Some(secs(3_600)));
        let report = Scheduler::new(fake.clone(), Schedule::default()).run_now(None).await;
        assert_eq!(fake.runs_of("very-busy").len(), 1, "an hour's wait is left to a later cycle");
        assert_eq!(report.failed().count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a4_a_manual_run_for_one_user_or_all() {
        let fake = Fake::new(&["a", "b"], secs(1));
        let scheduler = Scheduler::new(fake.clone(), Schedule::default());
        let one = scheduler.run_now(Some("b")).await;
        assert_eq!(one.users.len(), 1);
        assert_eq!((fake.runs_of("a").len(), fake.runs_of("b").len()), (0, 1));
        let all = scheduler.run_now(None).await;
        assert_eq!(all.users.iter().map(|u| u.user.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_the_wait_stops_at_once() {
        let fake = Fake::new(&["a"], secs(1));
        let scheduler = Scheduler::new(fake.clone(), Schedule::default());
        let (stop, shutdown) = watch::channel(false);
        let worker = tokio::spawn(async move { scheduler.run(shutdown, None).await });
        tokio::time::sleep(secs(10)).await;
        let asked = Instant::now();
        stop.send(true).unwrap();
        worker.await.unwrap();
        assert!(Instant::now() - asked < secs(1), "not after the 300 s interval");
        assert_eq!(fake.runs_of("a").len(), 1);
    }
}
