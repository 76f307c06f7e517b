//! [`Comm`] over MPI (rsmpi): the collectives of data-parallel training.
//! Sums are reduced to rank 0 and broadcast, so that every rank receives
//! the same bits whatever algorithm the MPI library picks for the reduction.

use std::cell::RefCell;

use bregman::train::comm::Comm;
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

/// The MPI world of this process; MPI is finalised when it is dropped.
pub struct MpiComm {
    world: SimpleCommunicator,
    scratch32: RefCell<Vec<f32>>,
    scratch64: RefCell<Vec<f64>>,
    // Declared last: dropped (MPI_Finalize) after the communicator.
    _universe: Universe,
}

impl MpiComm {
    /// Initialises MPI (a single process when not started by `mpirun`).
    ///
    /// **Errors** if MPI cannot be initialised (or already was).
    pub fn init() -> Result<MpiComm, String> {
        let universe = mpi::initialize().ok_or("MPI could not be initialised")?;
        Ok(MpiComm {
            world: universe.world(),
            scratch32: RefCell::new(Vec::new()),
            scratch64: RefCell::new(Vec::new()),
            _universe: universe,
        })
    }
}

macro_rules! sum_via_root {
    ($self:ident, $buf:ident, $scratch:ident) => {{
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
        self.world.process_at_rank(0).broadcast_into(buf);
    }
    fn all_equal(&self, value: u64) -> bool {
        let (mut lo, mut hi) = (0u64, 0u64);
        self.world
            .all_reduce_into(&value, &mut lo, SystemOperation::min());
        self.world
            .all_reduce_into(&value, &mut hi, SystemOperation::max());
        lo == hi
    }
}
