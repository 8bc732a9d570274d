//! Per-socket state: who the socket is, which rooms it joined, its rate limiter, and
//! its request queue.
//!
//! The wire layer hands over a socket's events synchronously in arrival order, but
//! handling one is async (backend round trips). Every socket therefore has an
//! [`Inbox`]: events are queued in arrival order and run one after another by a
//! drain task that exists only while there is work.
//! The disconnect clean-up goes through the same queue, after any in-flight request.
//! A job that panics is caught there ([`caught`]): counted, logged with the socket's
//! user, and the queue (and the gateway) go on.

use crate::ratelimit::TokenBucket;
use confab_backend::UserRef;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Session {
    /// Who the socket is: the user id (the identity everything is keyed by) and
    /// the display name, both checked at the handshake.
    pub user: UserRef,
    /// Roles of the identity (`admin`, `moderator`): the token's and the backend's.
    pub roles: Vec<String>,
    /// Private rooms the token grants (`rooms` claim).
    pub granted_rooms: Vec<String>,
    /// A guest identity.
    pub guest: bool,
    /// Woken when `auth:refresh` moves the expiry.
    expiry_moved: tokio::sync::Notify,
    /// Per joined room: what this user may not do there (read-only room, mute).
    limits: Mutex<HashMap<String, RoomLimits>>,
    /// When the identity's token expires (ms since the epoch); moved by
    /// `auth:refresh`.
    expires_at: Mutex<Option<u64>>,
    /// Cancelled when the session closes (ends the tasks that watch it).
    gone: CancellationToken,
    rooms: Mutex<BTreeSet<String>>,
    limiter: Mutex<TokenBucket>,
    /// Protocol errors allowed: a burst, then one per second.
    errors: Mutex<TokenBucket>,
    inbox: Mutex<Inbox>,
    max_queued: usize,
    closed: AtomicBool,
    /// This gateway's own delivery probe ([`crate::probe`]): no presence, no rooms,
    /// not counted as a connection.
    probe: AtomicBool,
    /// Rooms where this socket is typing, with a generation counter for expiry.
    pub typing: Mutex<HashMap<String, u64>>,
    /// Where the drain task runs (tracked: shutdown waits for it).
    tasks: TaskTracker,
}

/// Protocol errors a socket may make per second after its burst
/// (`GatewayConfig::protocol_errors_burst`) before it is disconnected (a buggy
/// client gets clear errors; a fuzzer gets cut).
pub const PROTOCOL_ERRORS_PER_SEC: f64 = 1.0;

/// Restrictions of one user in one room, loaded at join and updated by
/// moderation signals, so that sending checks no backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomLimits {
    /// An announcement room this user may not post in.
    pub read_only: bool,
    /// Muted until (ms since the epoch).
    pub muted_until: Option<u64>,
}

#[derive(Default)]
struct Inbox {
    jobs: VecDeque<BoxFuture<'static, ()>>,
    draining: bool,
}

/// What is queued: a client request (bounded), the server's own work (not
/// bounded), or the clean-up (last: drops what is still queued).
#[derive(Clone, Copy)]
enum Job {
    Request,
    Internal,
    Cleanup,
}

/// Why a request was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Over the rate: a token is there after this long.
    RateLimited(std::time::Duration),
    /// Too many requests waiting; retry after about this long.
    QueueFull(std::time::Duration),
    Closed,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        user: UserRef,
        roles: Vec<String>,
        granted_rooms: Vec<String>,
        guest: bool,
        expires_at: Option<u64>,
        rate: f64,
        burst: f64,
        errors_burst: f64,
        max_queued: usize,
        tasks: TaskTracker,
    ) -> Arc<Self> {
        Arc::new(Self {
            user,
            roles,
            granted_rooms,
            guest,
            expiry_moved: tokio::sync::Notify::new(),
            limits: Mutex::new(HashMap::new()),
            expires_at: Mutex::new(expires_at),
            gone: CancellationToken::new(),
            rooms: Mutex::new(BTreeSet::new()),
            limiter: Mutex::new(TokenBucket::new(rate, burst, Instant::now())),
            errors: Mutex::new(TokenBucket::new(
                PROTOCOL_ERRORS_PER_SEC,
                errors_burst,
                Instant::now(),
            )),
            inbox: Mutex::new(Inbox::default()),
            max_queued: max_queued.max(1),
            closed: AtomicBool::new(false),
            probe: AtomicBool::new(false),
            typing: Mutex::new(HashMap::new()),
            tasks,
        })
    }

    /// Mark this session as the gateway's delivery probe (before it is opened).
    pub fn mark_probe(&self) {
        self.probe.store(true, Ordering::Release);
    }

    pub fn is_probe(&self) -> bool {
        self.probe.load(Ordering::Acquire)
    }

    /// The user id.
    pub fn id(&self) -> &str {
        &self.user.id
    }

    /// The display name.
    pub fn name(&self) -> &str {
        &self.user.name
    }

    pub fn expires_at(&self) -> Option<u64> {
        *self.expires_at.lock()
    }

    pub fn set_expires_at(&self, at: Option<u64>) {
        *self.expires_at.lock() = at;
        // A permit is kept if the watcher is not waiting yet: no refresh is missed.
        self.expiry_moved.notify_one();
    }

    /// Resolves when the expiry is moved (after this is called).
    pub async fn expiry_moved(&self) {
        self.expiry_moved.notified().await
    }

    /// Cancelled once the session is closed.
    pub fn gone(&self) -> &CancellationToken {
        &self.gone
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Admins and moderators moderate every room.
    pub fn is_moderator(&self) -> bool {
        self.has_role("admin") || self.has_role("moderator")
    }

    pub fn room_limits(&self, room: &str) -> RoomLimits {
        self.limits.lock().get(room).copied().unwrap_or_default()
    }

    /// Set the restrictions loaded at join, keeping a later mute a moderation
    /// signal may have set meanwhile.
    pub fn merge_room_limits(&self, room: &str, loaded: RoomLimits) {
        let now = self.room_limits(room);
        self.set_room_limits(
            room,
            RoomLimits {
                read_only: loaded.read_only,
                muted_until: loaded.muted_until.max(now.muted_until),
            },
        );
    }

    pub fn set_room_limits(&self, room: &str, limits: RoomLimits) {
        let mut l = self.limits.lock();
        if limits == RoomLimits::default() {
            l.remove(room);
        } else {
            l.insert(room.to_owned(), limits);
        }
    }

    pub fn is_member(&self, room: &str) -> bool {
        self.rooms.lock().contains(room)
    }

    pub fn rooms(&self) -> Vec<String> {
        self.rooms.lock().iter().cloned().collect()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.lock().len()
    }

    /// Record membership; false if it was already there.
    pub fn add_room(&self, room: &str) -> bool {
        self.rooms.lock().insert(room.to_owned())
    }

    /// Forget membership; false if it was not there.
    pub fn remove_room(&self, room: &str) -> bool {
        self.limits.lock().remove(room);
        self.rooms.lock().remove(room)
    }

    /// Remove and return every room (disconnect clean-up).
    pub fn take_rooms(&self) -> Vec<String> {
        std::mem::take(&mut *self.rooms.lock())
            .into_iter()
            .collect()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Admit a client request: rate limit, then queue behind earlier requests.
    pub fn submit(self: &Arc<Self>, job: BoxFuture<'static, ()>) -> Result<(), Rejected> {
        self.admit()?;
        self.queue(job)
    }

    /// Count one inbound event against the rate limit (every event counts,
    /// refused ones included).
    pub fn admit(&self) -> Result<(), Rejected> {
        if self.is_closed() {
            return Err(Rejected::Closed);
        }
        let now = Instant::now();
        let mut limiter = self.limiter.lock();
        if limiter.try_take(now) {
            Ok(())
        } else {
            Err(Rejected::RateLimited(limiter.retry_after(now)))
        }
    }

    /// Queue an admitted request behind earlier ones.
    pub fn queue(self: &Arc<Self>, job: BoxFuture<'static, ()>) -> Result<(), Rejected> {
        if self.is_closed() {
            return Err(Rejected::Closed);
        }
        self.push(job, Job::Request)
    }

    /// Count a protocol error (malformed, oversized, binary or unknown event, bad
    /// payload); true once there were too many: the socket is to be disconnected.
    pub fn protocol_error(&self) -> bool {
        !self.errors.lock().try_take(Instant::now())
    }

    /// Queue work of the server's own (moderation) behind the socket's requests:
    /// neither rate limited nor bounded (it is rare and comes from moderators).
    /// Dropped if the session is closed.
    pub fn enqueue(self: &Arc<Self>, job: BoxFuture<'static, ()>) {
        if !self.is_closed() {
            let _ = self.push(job, Job::Internal);
        }
    }

    /// Queue the disconnect clean-up: it runs after the request in flight, and every
    /// request still queued behind it is dropped (the socket is gone). Only the
    /// first call queues its clean-up; later ones are ignored.
    pub fn close(self: &Arc<Self>, cleanup: BoxFuture<'static, ()>) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.gone.cancel();
            let _ = self.push(cleanup, Job::Cleanup);
        }
    }

    fn push(self: &Arc<Self>, job: BoxFuture<'static, ()>, kind: Job) -> Result<(), Rejected> {
        let mut inbox = self.inbox.lock();
        match kind {
            Job::Cleanup => inbox.jobs.clear(),
            Job::Request if inbox.jobs.len() >= self.max_queued => {
                return Err(Rejected::QueueFull(std::time::Duration::from_millis(100)))
            }
            Job::Request | Job::Internal => {}
        }
        inbox.jobs.push_back(job);
        if !inbox.draining {
            inbox.draining = true;
            let me = self.clone();
            self.tasks.spawn(async move { me.drain().await });
        }
        Ok(())
    }

    async fn drain(self: Arc<Self>) {
        loop {
            let job = {
                let mut inbox = self.inbox.lock();
                match inbox.jobs.pop_front() {
                    Some(job) => job,
                    None => {
                        inbox.draining = false;
                        return;
                    }
                }
            };
            if let Err(panic) = caught(job).await {
                crate::metrics::panicked("session");
                tracing::error!(user = %self.user.id, panic = %panic, "a job of this socket panicked (caught; its queue goes on)");
            }
        }
    }
}

/// Run `fut`, turning a panic into `Err(its message)`.
pub async fn caught<F: std::future::Future>(fut: F) -> Result<F::Output, String> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|p| {
            p.downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn user(id: &str) -> UserRef {
        UserRef {
            id: id.into(),
            name: id.into(),
        }
    }

    /// A plain session of user `id` with this rate, burst and queue bound.
    fn session(id: &str, rate: f64, burst: f64, max_queued: usize) -> Arc<Session> {
        Session::new(
            user(id),
            vec![],
            vec![],
            false,
            None,
            rate,
            burst,
            20.0,
            max_queued,
            TaskTracker::new(),
        )
    }

    #[tokio::test]
    async fn a_panicking_job_is_caught_and_the_queue_goes_on() {
        let s = session("a", 1000.0, 1000.0, 100);
        let (tx, rx) = tokio::sync::oneshot::channel();
        s.submit(Box::pin(async { panic!("boom in a handler") }))
            .unwrap();
        s.submit(Box::pin(async move {
            let _ = tx.send("after");
        }))
        .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx).await;
        assert_eq!(got.unwrap().unwrap(), "after");
        assert_eq!(
            caught(async { panic!("x{}", 1) }).await,
            Err::<(), _>("x1".to_owned())
        );
        assert_eq!(caught(async { 7 }).await, Ok(7));
    }

    #[tokio::test]
    async fn jobs_run_in_submission_order() {
        let s = session("a", 1000.0, 1000.0, 100);
        let log = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let mut done_tx = Some(done_tx);
        for i in 0..20u64 {
            let log = log.clone();
            let done = if i == 19 { done_tx.take() } else { None };
            s.submit(Box::pin(async move {
                // Later jobs are faster: only the queue keeps them in order.
                tokio::time::sleep(Duration::from_millis(20 - i)).await;
                log.lock().push(i);
                if let Some(d) = done {
                    let _ = d.send(());
                }
            }))
            .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), done_rx)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*log.lock(), (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn close_runs_cleanup_after_the_job_in_flight_and_drops_the_rest() {
        let s = session("a", 1000.0, 1000.0, 100);
        let log = Arc::new(Mutex::new(Vec::new()));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let l = log.clone();
        s.submit(Box::pin(async move {
            let _ = started_tx.send(());
            tokio::time::sleep(Duration::from_millis(50)).await;
            l.lock().push("in flight");
        }))
        .unwrap();
        started_rx.await.unwrap();
        let l = log.clone();
        s.submit(Box::pin(async move { l.lock().push("queued") }))
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let l = log.clone();
        s.close(Box::pin(async move {
            l.lock().push("cleanup");
            let _ = tx.send(());
        }));
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*log.lock(), ["in flight", "cleanup"]);
        // A second close is ignored (the clean-up must run once).
        let l = log.clone();
        s.close(Box::pin(async move { l.lock().push("cleanup again") }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(*log.lock(), ["in flight", "cleanup"]);
        assert_eq!(s.submit(Box::pin(async {})), Err(Rejected::Closed));
    }

    #[tokio::test]
    async fn queue_and_rate_limits() {
        let s = session("a", 0.0, 3.0, 100);
        for _ in 0..3 {
            s.submit(Box::pin(async {})).unwrap();
        }
        assert!(matches!(
            s.submit(Box::pin(async {})),
            Err(Rejected::RateLimited(wait)) if wait > Duration::ZERO
        ));
        let q = session("b", 1000.0, 1000.0, 2);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        q.submit(Box::pin(async move {
            let _ = rx.await;
        }))
        .unwrap();
        // The first job is in flight or queued; fill up to the bound.
        let mut results = vec![];
        for _ in 0..3 {
            results.push(q.submit(Box::pin(async {})));
        }
        assert!(results
            .iter()
            .any(|r| matches!(r, Err(Rejected::QueueFull(_)))));
        let _ = tx.send(());
    }
}
