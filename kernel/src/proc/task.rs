//! Tasks: user processes (one thread each) and kernel threads. A task owns its kernel
//! stack, its saved context and FP/SIMD state, its address space (`None` for kernel
//! threads) and its open files; the task table maps pids to tasks until a parent reaps
//! them.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::sched::WaitQueue;
use super::signal::{SigState, Signals};
use crate::arch::aarch64::context::{Context, FpState};
use crate::fs::Files;
use crate::mm::aspace::Mm;
use crate::mm::frame::frames;
use crate::mm::{phys_to_virt, PhysAddr, PAGE_SIZE};
use crate::sync::{IrqSpinLock, SpinLock};

pub type Pid = u32;

/// Kernel stack: 2^KSTACK_ORDER frames.
pub const KSTACK_ORDER: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// On a CPU.
    Running,
    /// On the run queue.
    Runnable,
    /// Waiting on a wait queue or a timer.
    Sleeping,
    /// Exited, not yet reaped.
    Zombie,
}

pub struct Task {
    pub pid: Pid,
    /// Changed only under the task table's lock (`become_zombie`).
    pub parent: AtomicU32,
    pub name: IrqSpinLock<String>,
    /// Where the task is; who may change it is `sched`'s protocol.
    state: AtomicU8,
    /// 1 from the moment a CPU takes the task off the run queue until that CPU has
    /// switched away from it (set and cleared under the run queue's lock, by `sched`).
    pub on_cpu: AtomicU8,
    pub ctx: UnsafeCell<Context>,
    pub fp: UnsafeCell<FpState>,
    pub tpidr_el0: AtomicU64,
    /// TTBR0_EL1 of the address space (ASID and root), 0 for kernel threads; the
    /// context switch reads it without taking the `mm` lock.
    pub ttbr0: AtomicU64,
    user: bool,
    kstack: PhysAddr,
    /// The address space. A lock that leaves IRQs on: no interrupt handler takes it
    /// (the tick only accounts, sets need_resched and wakes sleepers; the IPI only
    /// counts; faults on user memory are synchronous exceptions, never interrupts), and
    /// the longest critical sections in the kernel run under it: fork of a large VMA,
    /// a fault zeroing a 2 MiB folio, MAP_POPULATE, the deferred-split shrinker. An
    /// IRQ-safe lock here kept IRQs masked for all of them (tens of ms under TCG).
    pub mm: SpinLock<Option<Mm>>,
    /// Open files; like `mm`, no interrupt handler takes it, so it leaves IRQs on (a
    /// write to the console runs under it).
    pub files: SpinLock<Files>,
    /// Wait status for the parent (Linux encoding).
    pub exit_status: AtomicU32,
    /// Woken when a child exits.
    pub child_exit: WaitQueue,
    /// Page faults resolved without I/O (getrusage ru_minflt).
    pub minflt: AtomicU64,
    /// Ticks while this task was on a CPU.
    pub ticks: AtomicU64,
    /// CLONE_CHILD_CLEARTID / set_tid_address: zeroed at exit.
    pub clear_child_tid: AtomicU64,
    /// CLONE_CHILD_SETTID: written with the tid when the child first runs.
    pub set_child_tid: AtomicU64,
    /// Signal actions, mask, pending signals (`proc::signal` has the protocol).
    pub signals: Signals,
    /// The CPUs this task may run on, one bit each (sched_setaffinity); `sched`
    /// reads it when it takes a task off the run queue.
    pub affinity: AtomicU64,
    /// Resource limits, [soft, hard] per RLIMIT_* (RLIMIT_NOFILE's soft limit is
    /// also `files.limit`, where it is enforced).
    pub rlimits: SpinLock<[[u64; 2]; RLIM_NLIMITS]>,
}

/// Resources getrlimit knows (RLIM_NLIMITS).
pub const RLIM_NLIMITS: usize = 16;
pub const RLIMIT_STACK: usize = 3;
pub const RLIMIT_NOFILE: usize = 7;

/// Linux's defaults as a process sees them here: an 8 MiB stack, the descriptors
/// this kernel has, the rest unlimited.
fn default_rlimits() -> [[u64; 2]; RLIM_NLIMITS] {
    let mut r = [[u64::MAX; 2]; RLIM_NLIMITS];
    r[RLIMIT_STACK][0] = 8 << 20;
    r[RLIMIT_NOFILE] = [crate::fs::MAX_FDS as u64; 2];
    r
}

// SAFETY: `ctx` and `fp` are only touched by the scheduler, for a task that is not
// running anywhere (on_cpu == 0) or by the CPU running it; everything else is atomic or
// locked.
unsafe impl Sync for Task {}
// SAFETY: as for Sync: a task moves between CPUs only through the scheduler's handshake.
unsafe impl Send for Task {}

impl Task {
    pub fn new(pid: Pid, parent: Pid, name: &str, mm: Option<Mm>) -> Option<Arc<Task>> {
        let kstack = frames().alloc(KSTACK_ORDER)?;
        let ttbr0 = mm.as_ref().map_or(0, |m| m.tables.ttbr0());
        Some(Arc::new(Task {
            pid,
            parent: AtomicU32::new(parent),
            name: IrqSpinLock::new(String::from(name)),
            state: AtomicU8::new(State::Sleeping as u8),
            on_cpu: AtomicU8::new(0),
            ctx: UnsafeCell::new(Context::default()),
            fp: UnsafeCell::new(FpState::default()),
            tpidr_el0: AtomicU64::new(0),
            ttbr0: AtomicU64::new(ttbr0),
            user: mm.is_some(),
            kstack,
            mm: SpinLock::new(mm),
            files: SpinLock::new(Files::console()),
            exit_status: AtomicU32::new(0),
            child_exit: WaitQueue::new(),
            minflt: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            clear_child_tid: AtomicU64::new(0),
            set_child_tid: AtomicU64::new(0),
            signals: Signals::new(SigState::new(pid == 1)),
            affinity: AtomicU64::new(u64::MAX),
            rlimits: SpinLock::new(default_rlimits()),
        }))
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::Running,
            1 => State::Runnable,
            2 => State::Sleeping,
            _ => State::Zombie,
        }
    }

    pub fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// Move from `from` to `to` if the task is in `from`.
    pub fn transition(&self, from: State, to: State) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn is_user(&self) -> bool {
        self.user
    }

    /// Top of the kernel stack (exclusive).
    pub fn kstack_top(&self) -> u64 {
        phys_to_virt(self.kstack).as_u64() + (PAGE_SIZE << KSTACK_ORDER) as u64
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        frames().free(self.kstack, KSTACK_ORDER);
    }
}

static TASKS: IrqSpinLock<BTreeMap<Pid, Arc<Task>>> = IrqSpinLock::new(BTreeMap::new());
static NEXT_PID: AtomicU32 = AtomicU32::new(1);

pub fn alloc_pid() -> Pid {
    NEXT_PID.fetch_add(1, Ordering::Relaxed)
}

pub fn insert(t: Arc<Task>) {
    TASKS.lock().insert(t.pid, t);
}

pub fn remove(pid: Pid) -> Option<Arc<Task>> {
    TASKS.lock().remove(&pid)
}

pub fn get(pid: Pid) -> Option<Arc<Task>> {
    TASKS.lock().get(&pid).cloned()
}

/// The calling task exits: under the task table's lock, its children go to init, it
/// becomes a zombie and its parent is read, so that a parent (or init) checking for
/// zombie children under the same lock sees all of it or none. Returns the parent
/// (which exists: a task reparents its children before it becomes a zombie itself) and
/// whether any child was handed to init.
pub fn become_zombie(t: &Task) -> (Arc<Task>, bool) {
    let tasks = TASKS.lock();
    let mut reparented = false;
    for c in tasks
        .values()
        .filter(|c| c.parent.load(Ordering::Relaxed) == t.pid)
    {
        c.parent.store(1, Ordering::Relaxed);
        reparented = true;
    }
    t.set_state(State::Zombie);
    let parent = t.parent.load(Ordering::Relaxed);
    let parent = tasks
        .get(&parent)
        .cloned()
        .expect("the parent of an exiting task is in the task table");
    (parent, reparented)
}

/// A task for which `pred` holds.
pub fn find(pred: impl Fn(&Task) -> bool) -> Option<Arc<Task>> {
    TASKS.lock().values().find(|t| pred(t)).cloned()
}

/// The children of `pid`.
pub fn children(pid: Pid) -> Vec<Arc<Task>> {
    TASKS
        .lock()
        .values()
        .filter(|t| t.parent.load(Ordering::Acquire) == pid)
        .cloned()
        .collect()
}

/// Every user process (running, sleeping or zombie).
pub fn all_user() -> Vec<Arc<Task>> {
    TASKS
        .lock()
        .values()
        .filter(|t| t.is_user())
        .cloned()
        .collect()
}

/// The task with the smallest pid above `pid` (the collapse thread's round-robin).
pub fn next_after(pid: Pid) -> Option<Arc<Task>> {
    TASKS.lock().range(pid + 1..).next().map(|(_, t)| t.clone())
}

/// Tasks that exist (running, sleeping or zombie).
pub fn count() -> usize {
    TASKS.lock().len()
}
