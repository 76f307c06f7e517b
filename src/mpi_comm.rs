//! [`Comm`] over MPI (rsmpi): the collectives of data-parallel training.
//! Sums are reduced to rank 0 and broadcast, so that every rank receives
//! the same bits whatever algorithm the MPI library picks for the reduction.
//!
//! A collective that waits longer than `BREGMAN_MPI_TIMEOUT` seconds (default
//! [`DEFAULT_TIMEOUT_S`]) for the other ranks ends this rank with a message
//! (a watchdog thread, [`Watchdog`]): a rank that died is noticed by `mpirun`
//! itself, but one that hangs (stopped, deadlocked, its host unreachable)
//! would otherwise keep every other rank waiting for ever. `mpirun` then stops
//! the job; the last checkpoint, written atomically, stays whole.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bregman::train::comm::Comm;
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

/// How long a collective may wait for the other ranks by default: long
/// enough for rank 0 to evaluate and write a checkpoint while the others
/// wait, short enough that a hung job ends within minutes.
pub const DEFAULT_TIMEOUT_S: u64 = 600;

/// The collectives, by the index [`Watchdog::enter`] records.
const COLLECTIVES: [&str; 3] = [
    "a gradient or metric sum",
    "a broadcast",
    "the parameter check",
];

/// Watches the collective this rank is in (if any) from its own thread.
struct Watchdog {
    /// Milliseconds since `base` at which the current collective began, plus
    /// one (0: not in a collective).
    since: Arc<AtomicU64>,
    /// Index into [`COLLECTIVES`] of the current one.
    what: Arc<AtomicUsize>,
    base: Instant,
}

/// Marks the time spent in one collective; clears the mark when dropped.
struct Waiting<'a>(&'a Watchdog);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.since.store(0, Ordering::Relaxed);
    }
}

impl Watchdog {
    /// Starts the watching thread: once a collective has waited `timeout`, it
    /// prints what happened on stderr and exits the process (status 3).
    fn start(rank: i32, size: i32, timeout: Duration) -> Watchdog {
        let (since, what) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicUsize::new(0)));
        let base = Instant::now();
        let (s, w) = (Arc::clone(&since), Arc::clone(&what));
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200).min(timeout));
            let began = s.load(Ordering::Relaxed);
            if began == 0 {
                continue;
            }
            let waited = base
                .elapsed()
                .saturating_sub(Duration::from_millis(began - 1));
            if waited >= timeout {
                eprintln!(
                    "error: rank {rank} of {size} has waited {} s in {} for the other ranks \
                     (BREGMAN_MPI_TIMEOUT={}): a rank has died or hangs. Ending this rank so \
                     that mpirun stops the job; the last checkpoint is whole (--resume it).",
                    waited.as_secs(),
                    COLLECTIVES[w.load(Ordering::Relaxed)],
                    timeout.as_secs()
                );
                std::process::exit(3);
            }
        });
        Watchdog { since, what, base }
    }

    /// Marks the start of collective `what` (an index into [`COLLECTIVES`]).
    fn enter(&self, what: usize) -> Waiting<'_> {
        self.what.store(what, Ordering::Relaxed);
        let now = self.base.elapsed().as_millis() as u64 + 1;
        self.since.store(now, Ordering::Relaxed);
        Waiting(self)
    }
}

/// The collective timeout from `BREGMAN_MPI_TIMEOUT` (whole seconds > 0).
///
/// **Errors** on a value that is not a positive whole number of seconds.
fn timeout() -> Result<Duration, String> {
    match std::env::var("BREGMAN_MPI_TIMEOUT") {
        Err(_) => Ok(Duration::from_secs(DEFAULT_TIMEOUT_S)),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(s) if s > 0 => Ok(Duration::from_secs(s)),
            _ => Err(format!(
                "BREGMAN_MPI_TIMEOUT={v}: expected a whole number of seconds > 0"
            )),
        },
    }
}

/// The MPI world of this process; MPI is finalised when it is dropped.
pub struct MpiComm {
    world: SimpleCommunicator,
    watchdog: Watchdog,
    scratch32: RefCell<Vec<f32>>,
    scratch64: RefCell<Vec<f64>>,
    // Declared last: dropped (MPI_Finalize) after the communicator.
    _universe: Universe,
}

impl MpiComm {
    /// Initialises MPI (a single process when not started by `mpirun`).
    ///
    /// **Errors** if MPI cannot be initialised (or already was), or on a
    /// `BREGMAN_MPI_TIMEOUT` that is not a positive whole number of seconds.
    pub fn init() -> Result<MpiComm, String> {
        let timeout = timeout()?;
        let universe = mpi::initialize().ok_or("MPI could not be initialised")?;
        let world = universe.world();
        Ok(MpiComm {
            watchdog: Watchdog::start(world.rank(), world.size(), timeout),
            world,
            scratch32: RefCell::new(Vec::new()),
            scratch64: RefCell::new(Vec::new()),
            _universe: universe,
        })
    }
}

macro_rules! sum_via_root {
    ($self:ident, $buf:ident, $scratch:ident) => {{
        let _waiting = $self.watchdog.enter(0);
        let root = $self.world.process_at_rank(0);
        if $self.world.rank() == 0 {
            let mut out = $self.$scratch.borrow_mut();
            out.clear();
            out.resize($buf.len(), 0.0);
            root.reduce_into_root(&$buf[..], &mut out[..], SystemOperation::sum());
            $buf.copy_from_slice(&out);
        } else {
            root.reduce_into(&$buf[..], SystemOperation::sum());
        }
        root.broadcast_into(&mut $buf[..]);
    }};
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn sum_f32(&self, buf: &mut [f32]) {
        sum_via_root!(self, buf, scratch32)
    }
    fn sum_f64(&self, buf: &mut [f64]) {
        sum_via_root!(self, buf, scratch64)
    }
    fn broadcast_f32(&self, buf: &mut [f32]) {
        let _waiting = self.watchdog.enter(1);
        self.world.process_at_rank(0).broadcast_into(buf);
    }
    fn all_equal(&self, value: u64) -> bool {
        let _waiting = self.watchdog.enter(2);
        let (mut lo, mut hi) = (0u64, 0u64);
        self.world
            .all_reduce_into(&value, &mut lo, SystemOperation::min());
        self.world
            .all_reduce_into(&value, &mut hi, SystemOperation::max());
        lo == hi
    }
}
