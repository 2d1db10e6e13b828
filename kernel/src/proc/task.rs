//! Tasks: the threads of user processes, and kernel threads. A task owns its kernel
//! stack, its saved context and FP/SIMD state; the threads of one process (its thread
//! group, `Group`) share the address space (`None` for kernel threads), the open files
//! (with CLONE_FILES), the resource limits and the signal actions. The task table maps
//! thread ids to tasks: a process's first thread (the group leader, tid == tgid) stays
//! in it until the parent reaps the process, the others leave it when they exit.
//!
//! # Protocol (the thread group)
//!
//! | field | protected by | written by |
//! |---|---|---|
//! | `Group::live` | atomic | `clone` (+1), each thread's exit (-1); the thread that takes it to 0 ends the process |
//! | `Group::exiting`, `Group::code` | atomic, first `exit_group` wins | `exit_group`, a fatal signal, a fault kill; the leader's own exit sets `code` |
//! | `Group::exec_task` | atomic, first exec wins | an exec in a process with other threads, until they have exited |
//! | `Task::pid` | the task table's lock (read atomically) | `take_leadership`: an exec from a thread that is not the leader swaps it with the leader's |
//! | `Group::dead` | the task table's lock | the last thread, in `become_zombie`: the parent may reap the leader from then on |
//! | `Task::mm` (shared cell) | its lock | every thread; the last one takes the `Mm` out |
//! | the process's pending signals (`proc::signal::SharedPending`, an `Arc` in each thread's `SigState`) | its own lock, under a thread's signal lock; the set also atomic | kill and SIGCHLD senders queue, any thread that does not block a signal takes it (`proc::signal`'s protocol) |
//! | `Task::robust_list` | atomic | the thread itself (set_robust_list; its exit or exec takes it, to walk it: `proc::robust`); get_robust_list reads it from any thread |
//!
//! Order: the task table's lock, then a task's signal lock; the `mm` lock is never
//! taken under either.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::mmlock::MmLock;
use super::sched::WaitQueue;
use super::signal::{SigState, Signals};
use crate::arch::aarch64::context::{Context, FpState};
use crate::arch::aarch64::mm::machine::Mm;
use crate::fs::Files;
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
    /// A thread (not a group leader) that exited and left the task table itself:
    /// nobody reaps it; its CPU drops the last count once it has switched away.
    Dead,
}

/// What the threads of one process share and how the process ends (see the module's
/// protocol).
pub struct Group {
    /// The process id: the leader's tid.
    pub tgid: Pid,
    /// Threads that have not exited.
    pub live: AtomicU32,
    /// exit_group (or a fatal signal) has begun: every thread is on its way out.
    pub exiting: AtomicBool,
    /// The thread whose exec is ending the others (0: none): a second exec, or a
    /// clone, meanwhile is EAGAIN (Linux's `signal->group_exec_task`).
    pub exec_task: AtomicU32,
    /// The wait status of the process once it ends (first exit_group, else the
    /// leader's own exit).
    pub code: AtomicU32,
    /// Every thread has exited: the leader, a zombie, may be reaped.
    pub dead: AtomicBool,
    /// Woken when a child of the process exits (any thread may wait for it).
    pub child_exit: WaitQueue,
    /// Serialises rt_sigaction, which writes every thread's copy of the actions.
    pub sigaction: SpinLock<()>,
    /// Threads other than the leader made, and those whose kernel stacks are free
    /// again: the reaper waits for the two to agree, so that every frame of the
    /// process is back when wait returns.
    pub made: AtomicU32,
    pub freed: AtomicU32,
}

impl Group {
    fn new(tgid: Pid) -> Arc<Group> {
        Arc::new(Group {
            tgid,
            live: AtomicU32::new(1),
            exiting: AtomicBool::new(false),
            exec_task: AtomicU32::new(0),
            code: AtomicU32::new(0),
            dead: AtomicBool::new(false),
            child_exit: WaitQueue::new(),
            sigaction: SpinLock::new(()),
            made: AtomicU32::new(0),
            freed: AtomicU32::new(0),
        })
    }
}

pub struct Task {
    /// The thread id (the process id too, for a group leader). Changes once at most:
    /// a thread that execs takes the leader's (`take_leadership`).
    pid: AtomicU32,
    /// The process id: the group leader's tid.
    pub tgid: Pid,
    pub group: Arc<Group>,
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
    /// The address space (`proc::mmlock`: waiters spin briefly, then sleep). A lock
    /// that leaves IRQs on: no interrupt handler takes it
    /// (the tick only accounts, sets need_resched and wakes sleepers; the IPI only
    /// counts; faults on user memory are synchronous exceptions, never interrupts), and
    /// the longest critical sections in the kernel run under it: fork of a large VMA,
    /// a fault zeroing a 2 MiB folio, MAP_POPULATE, the deferred-split shrinker. An
    /// IRQ-safe lock here kept IRQs masked for all of them (tens of ms under TCG).
    /// Shared by the threads of the process.
    pub mm: Arc<MmLock>,
    /// Open files; like `mm`, no interrupt handler takes it, so it leaves IRQs on (a
    /// write to the console runs under it). Shared by threads made with CLONE_FILES.
    pub files: Arc<SpinLock<Files>>,
    /// Wait status for the parent (Linux encoding), on the group leader.
    pub exit_status: AtomicU32,
    /// Page faults resolved without I/O (getrusage ru_minflt).
    pub minflt: AtomicU64,
    /// Ticks while this task was on a CPU.
    pub ticks: AtomicU64,
    /// Another thread's exec kills this one: its SIGKILL ends the thread, not the
    /// process.
    pub doomed: AtomicBool,
    /// CLONE_CHILD_CLEARTID / set_tid_address: zeroed at exit.
    pub clear_child_tid: AtomicU64,
    /// CLONE_CHILD_SETTID: written with the tid when the child first runs.
    pub set_child_tid: AtomicU64,
    /// set_robust_list's head (0: none), walked at exit and exec (`proc::robust`);
    /// written by the thread itself, read by get_robust_list from any thread.
    pub robust_list: AtomicU64,
    /// Signal actions, mask, pending signals (`proc::signal` has the protocol).
    pub signals: Signals,
    /// The CPUs this task may run on, one bit each (sched_setaffinity); `sched`
    /// reads it when it takes a task off the run queue.
    pub affinity: AtomicU64,
    /// Resource limits, [soft, hard] per RLIMIT_* (RLIMIT_NOFILE's soft limit is
    /// also `files.limit`, where it is enforced). Shared by the threads of the process.
    pub rlimits: Arc<SpinLock<[[u64; 2]; RLIM_NLIMITS]>>,
}

/// What a new task shares with others, or holds alone.
struct Shared {
    mm: Arc<MmLock>,
    files: Arc<SpinLock<Files>>,
    rlimits: Arc<SpinLock<[[u64; 2]; RLIM_NLIMITS]>>,
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
    /// The first thread of a new process (or a kernel thread, with no `mm`), on the
    /// kernel stack `kstack` (`alloc_kstack`: fork allocates it first, and may try
    /// again after reclaim).
    pub fn new(pid: Pid, parent: Pid, name: &str, mm: Option<Mm>, kstack: PhysAddr) -> Arc<Task> {
        let ttbr0 = mm.as_ref().map_or(0, |m| m.tables.ttbr0());
        let user = mm.is_some();
        Self::build(
            pid,
            Group::new(pid),
            parent,
            name,
            Shared {
                mm: Arc::new(MmLock::new(mm)),
                files: Arc::new(SpinLock::new(Files::console())),
                rlimits: Arc::new(SpinLock::new(default_rlimits())),
            },
            ttbr0,
            user,
            kstack,
        )
    }

    /// A kernel stack for `new`.
    pub fn alloc_kstack() -> Option<PhysAddr> {
        frames().alloc(KSTACK_ORDER)
    }

    /// A new thread `tid` in `leader`'s process: the address space, limits and group
    /// shared, the files shared if `files` is `None` (CLONE_FILES), else these.
    pub fn new_thread(tid: Pid, of: &Task, files: Option<Files>) -> Option<Arc<Task>> {
        let shared = Shared {
            mm: of.mm.clone(),
            files: files.map_or_else(|| of.files.clone(), |f| Arc::new(SpinLock::new(f))),
            rlimits: of.rlimits.clone(),
        };
        let name = of.name.lock().clone();
        let parent = of.parent.load(Ordering::Acquire);
        let ttbr0 = of.ttbr0.load(Ordering::Acquire);
        let kstack = frames().alloc(KSTACK_ORDER)?;
        let t = Self::build(
            tid,
            of.group.clone(),
            parent,
            &name,
            shared,
            ttbr0,
            true,
            kstack,
        );
        of.group.live.fetch_add(1, Ordering::AcqRel);
        of.group.made.fetch_add(1, Ordering::AcqRel);
        Some(t)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        pid: Pid,
        group: Arc<Group>,
        parent: Pid,
        name: &str,
        shared: Shared,
        ttbr0: u64,
        user: bool,
        kstack: PhysAddr,
    ) -> Arc<Task> {
        Arc::new(Task {
            pid: AtomicU32::new(pid),
            tgid: group.tgid,
            group,
            parent: AtomicU32::new(parent),
            name: IrqSpinLock::new(String::from(name)),
            state: AtomicU8::new(State::Sleeping as u8),
            on_cpu: AtomicU8::new(0),
            ctx: UnsafeCell::new(Context::default()),
            fp: UnsafeCell::new(FpState::default()),
            tpidr_el0: AtomicU64::new(0),
            ttbr0: AtomicU64::new(ttbr0),
            user,
            kstack,
            mm: shared.mm,
            files: shared.files,
            exit_status: AtomicU32::new(0),
            minflt: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            doomed: AtomicBool::new(false),
            clear_child_tid: AtomicU64::new(0),
            set_child_tid: AtomicU64::new(0),
            robust_list: AtomicU64::new(0),
            signals: Signals::new(SigState::new(pid == 1)),
            affinity: AtomicU64::new(u64::MAX),
            rlimits: shared.rlimits,
        })
    }

    /// The thread id.
    pub fn pid(&self) -> Pid {
        self.pid.load(Ordering::Acquire)
    }

    /// Whether this is the first thread of its process (or the one that took its
    /// place in an exec).
    pub fn is_leader(&self) -> bool {
        self.pid() == self.tgid
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::Running,
            1 => State::Runnable,
            2 => State::Sleeping,
            3 => State::Zombie,
            _ => State::Dead,
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
        if !self.is_leader() {
            self.group.freed.fetch_add(1, Ordering::AcqRel);
        }
    }
}

static TASKS: IrqSpinLock<BTreeMap<Pid, Arc<Task>>> = IrqSpinLock::new(BTreeMap::new());
static NEXT_PID: AtomicU32 = AtomicU32::new(1);

pub fn alloc_pid() -> Pid {
    NEXT_PID.fetch_add(1, Ordering::Relaxed)
}

pub fn insert(t: Arc<Task>) {
    TASKS.lock().insert(t.pid(), t);
}

pub fn remove(pid: Pid) -> Option<Arc<Task>> {
    TASKS.lock().remove(&pid)
}

pub fn get(pid: Pid) -> Option<Arc<Task>> {
    TASKS.lock().get(&pid).cloned()
}

/// The last thread of a process exits: under the task table's lock, the process's
/// children go to init, the thread becomes a zombie, the process is marked dead and
/// its parent is read, so that a parent (or init) checking for zombie children under
/// the same lock sees all of it or none. Returns the group leader (the task the
/// parent reaps: `t` itself, or a zombie already), its parent (which exists: a
/// process reparents its children before it ends itself) and whether any child was
/// handed to init.
pub fn become_zombie(t: &Task) -> (Arc<Task>, Arc<Task>, bool) {
    let tasks = TASKS.lock();
    let mut reparented = false;
    for c in tasks
        .values()
        .filter(|c| c.parent.load(Ordering::Relaxed) == t.tgid)
    {
        c.parent.store(1, Ordering::Relaxed);
        reparented = true;
    }
    t.set_state(State::Zombie);
    t.group.dead.store(true, Ordering::Release);
    let leader = tasks
        .get(&t.tgid)
        .cloned()
        .expect("a process's leader stays in the task table until it is reaped");
    let parent = leader.parent.load(Ordering::Relaxed);
    let parent = tasks
        .get(&parent)
        .cloned()
        .expect("the parent of an exiting task is in the task table");
    (leader, parent, reparented)
}

/// exec from thread `t`, not the leader, once every other thread has exited and the
/// leader, a zombie, is off its CPU (Linux's de_thread): `t` takes the leader's tid
/// and parent, and the leader leaves the task table with `t`'s old tid, as a thread
/// that exited (its stack counts in `Group::freed` when it goes). Returns the old
/// leader, for the caller to drop with no lock held.
pub fn take_leadership(t: &Arc<Task>) -> Arc<Task> {
    let mut tasks = TASKS.lock();
    let leader = tasks
        .remove(&t.tgid)
        .expect("a process's leader stays in the task table until it is reaped");
    let old = t.pid();
    tasks.remove(&old);
    leader.pid.store(old, Ordering::Release);
    t.pid.store(t.tgid, Ordering::Release);
    t.parent
        .store(leader.parent.load(Ordering::Relaxed), Ordering::Relaxed);
    tasks.insert(t.tgid, t.clone());
    leader
}

/// The threads of process `tgid` (the leader, a zombie or not, included).
pub fn threads_of(tgid: Pid) -> Vec<Arc<Task>> {
    TASKS
        .lock()
        .values()
        .filter(|t| t.tgid == tgid)
        .cloned()
        .collect()
}

/// A task for which `pred` holds.
pub fn find(pred: impl Fn(&Task) -> bool) -> Option<Arc<Task>> {
    TASKS.lock().values().find(|t| pred(t)).cloned()
}

/// The child processes of process `pid` (their leaders).
pub fn children(pid: Pid) -> Vec<Arc<Task>> {
    TASKS
        .lock()
        .values()
        .filter(|t| t.is_leader() && t.parent.load(Ordering::Acquire) == pid)
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

/// The process leader with the smallest pid above `pid` (the collapse thread's
/// round-robin: one visit per address space).
pub fn next_after(pid: Pid) -> Option<Arc<Task>> {
    TASKS
        .lock()
        .range(pid + 1..)
        .find(|(_, t)| t.is_leader())
        .map(|(_, t)| t.clone())
}

/// Tasks that exist (running, sleeping or zombie).
pub fn count() -> usize {
    TASKS.lock().len()
}
