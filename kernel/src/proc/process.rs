//! The life of a process: the first one (/init), fork, exec, exit and wait; what
//! happens on a user fault (resolve it, or kill the process with a report); the
//! kernel threads that run beside the processes (`khugepaged`, `kswapd`: started with
//! /init, stopped at shutdown); and the hooks the trap code calls on the way back to
//! EL0.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::deliver;
use super::exec;
use super::sched::{self, me};
use super::signal::{Cause, SigInfo, SigState};
use super::task::{self, Pid, State, Task};
use crate::arch::aarch64::context::{self, Context, FpState};
use crate::arch::aarch64::esr::{AbortSignal, Esr, ExceptionClass};
use crate::arch::aarch64::trap::TrapFrame;
use crate::arch::aarch64::uaccess;
use crate::mm::fault::Access;
use crate::mm::install::FaultError;
use crate::mm::lazyfree::{Entry, Visit};
use crate::mm::{VirtAddr, PAGE_SIZE};
use crate::uapi::Errno;
use crate::uapi::*;
use crate::{kprintln, power};

core::arch::global_asm!(
    // First run of a user task: sp points at its TrapFrame.
    ".global user_task_start",
    "user_task_start:",
    "    bl user_task_first_run",
    "    b trap_return",
);

extern "C" {
    static user_task_start: u8;
}

/// Environment of /init.
const INIT_ENV: [&[u8]; 2] = [b"HOME=/", b"TERM=linux"];

fn frame_slot(t: &Task) -> *mut TrapFrame {
    (t.kstack_top() - core::mem::size_of::<TrapFrame>() as u64) as *mut TrapFrame
}

/// Put `frame` on top of the task's kernel stack and make the task return to EL0 with it.
fn prepare_user(t: &Task, frame: TrapFrame) {
    let slot = frame_slot(t);
    // SAFETY: the task has not run yet: its kernel stack and context are ours.
    unsafe {
        slot.write(frame);
        let ctx = &mut *t.ctx.get();
        *ctx = Context::default();
        ctx.sp = slot as u64;
        ctx.lr = core::ptr::addr_of!(user_task_start) as u64;
    }
}

fn user_frame(entry: u64, sp: u64) -> TrapFrame {
    // SPSR 0: EL0t with all of DAIF clear.
    TrapFrame {
        x: [0; 31],
        sp_el0: sp,
        elr: entry,
        spsr: 0,
        esr: 0,
        far: 0,
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[no_mangle]
extern "C" fn user_task_first_run() {
    sched::finish_switch();
    let t = me();
    let tid_ptr = t.set_child_tid.swap(0, Ordering::AcqRel);
    if tid_ptr != 0 {
        let _ = uaccess::write_user(tid_ptr as usize, &t.pid());
    }
    crate::arch::irq::leaving_for_el0();
}

/// How long a `patient` reclaimer (one that holds no `Mm` lock) spins for a busy
/// owner's `Mm` lock: a holder never sleeps with it (the kernel is not preempted), so
/// a fault, one batch of a system call or one collapse block ends within it.
const OWNER_PATIENCE_NS: u64 = 2_000_000;

/// Reclaim's way to the address space owning a lazyfree entry (`mm::reclaim`): the
/// process whose tables have that root, its `Mm` tried (the caller may hold its own),
/// for up to `OWNER_PATIENCE_NS` if `patient`; `None` if busy, `Stale` if no process
/// has that root any more.
fn reclaim_owner(e: Entry, patient: bool) -> Option<Visit> {
    let Some(t) =
        task::find(|t| t.ttbr0.load(Ordering::Acquire) & ((1 << 48) - 1) == e.owner.as_u64())
    else {
        return Some(Visit::Stale);
    };
    let deadline = crate::time::uptime_ns() + if patient { OWNER_PATIENCE_NS } else { 0 };
    let mut mm = loop {
        if let Some(mm) = t.mm.try_lock() {
            break mm;
        }
        if crate::time::uptime_ns() >= deadline {
            return None;
        }
        core::hint::spin_loop();
    };
    Some(mm.as_mut().map_or(Visit::Stale, |mm| mm.reclaim_entry(e)))
}

/// Start /init (pid 1) from the initramfs.
pub fn spawn_init(path: &str, args: &[&str]) -> Result<Pid, Errno> {
    crate::mm::reclaim::set_owner_hook(reclaim_owner);
    crate::fs::sysctl::set_default_threads_max(
        crate::mm::frame::frames().managed_frames() * PAGE_SIZE,
        PAGE_SIZE << task::KSTACK_ORDER,
    );
    FREE_AT_INIT.store(free_frames(), Ordering::Relaxed);
    let mut argv: Vec<&[u8]> = alloc::vec![path.as_bytes()];
    argv.extend(args.iter().map(|a| a.as_bytes()));
    let image = exec::load(path, &argv, &INIT_ENV)?;
    let pid = task::alloc_pid();
    let kstack = Task::alloc_kstack().ok_or(ENOMEM)?;
    let t = Task::new(pid, 0, basename(path), Some(image.mm), kstack);
    prepare_user(&t, user_frame(image.entry, image.sp));
    task::insert(t.clone());
    sched::start(&t);
    super::khugepaged::start();
    super::kswapd::start();
    Ok(pid)
}

/// Run `f`, an allocation of fork or clone (page tables, a kernel stack), again after
/// each reclaim pass run with no lock held that gave memory back (`mm::reclaim::
/// unlocked`), up to `OOM_RETRIES` times: ENOMEM only when reclaim finds nothing
/// more, as Linux's allocator enters direct reclaim first. A soak's fork failed with
/// ENOMEM while the ballast's lazyfree memory was there to discard.
fn after_reclaim<T>(mut f: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    for _ in 0..OOM_RETRIES {
        match f() {
            Err(ENOMEM)
                if crate::mm::reclaim::unlocked::<
                    crate::arch::aarch64::mm::machine::KernelMachine,
                >(1) => {}
            r => return r,
        }
    }
    f()
}

/// clone() with fork semantics: a copy of the caller that returns 0.
pub fn fork(frame: &TrapFrame, args: &CloneArgs) -> Result<Pid, Errno> {
    const ALLOWED: u64 =
        CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | CLONE_PARENT_SETTID | CLONE_SETTLS | 0xff;
    let flags = args.flags;
    if flags & !ALLOWED != 0 || flags & 0xff != SIGCHLD as u64 {
        return Err(EINVAL);
    }
    // Linux's threads-max check (`copy_process`), before any copying. Like Linux's
    // it is not atomic with the insertion: forks racing on n CPUs may overshoot the
    // limit by n - 1 tasks at most.
    if task::count() >= crate::fs::sysctl::threads_max() {
        return Err(EAGAIN);
    }
    let parent = me();
    let kstack = after_reclaim(|| Task::alloc_kstack().ok_or(ENOMEM))?;
    let (mm, uffd) = after_reclaim(|| {
        let mut guard = parent.mm.lock();
        let pm = guard.as_mut().ok_or(EINVAL)?;
        let mut mm = pm.fork()?;
        mm.thp_disabled = pm.thp_disabled;
        let uffd = super::userfault::fork(pm, &mut mm);
        Ok((mm, uffd))
    })
    .inspect_err(|_| crate::mm::frame::frames().free(kstack, task::KSTACK_ORDER))?;
    let pid = task::alloc_pid();
    let child = Task::new(pid, parent.tgid, &parent.name.lock(), Some(mm), kstack);
    *child.files.lock() = parent.files.lock().clone();
    *child.rlimits.lock() = *parent.rlimits.lock();
    // UFFD_FEATURE_EVENT_FORK: the monitor takes the child's contexts in first.
    super::userfault::fork_events(&parent, &child.mm, uffd);
    let signals = parent.signals.with(|s| s.fork());
    start_child(&parent, &child, frame, args, signals);
    Ok(pid)
}

/// What clone's caller asked of the new task's start.
pub struct CloneArgs {
    pub flags: u64,
    /// The new task's stack pointer (0: the caller's).
    pub newsp: u64,
    /// CLONE_PARENT_SETTID's word, in the caller.
    pub parent_tid: u64,
    /// CLONE_SETTLS's TPIDR_EL0.
    pub tls: u64,
    /// CLONE_CHILD_SETTID's and CLONE_CHILD_CLEARTID's word, in the child.
    pub child_tid: u64,
}

/// Start `child`, a new process or thread of the calling `parent`: the caller's
/// registers with x0 = 0 (on `newsp` if given), its FP/SIMD registers and TPIDR_EL0
/// (or CLONE_SETTLS's), the tid words, `signals`, the affinity; the tid written to
/// the caller's word before the child can run and exit.
fn start_child(
    parent: &Task,
    child: &Arc<Task>,
    frame: &TrapFrame,
    a: &CloneArgs,
    signals: SigState,
) {
    let mut f = TrapFrame {
        x: frame.x,
        sp_el0: frame.sp_el0,
        elr: frame.elr,
        spsr: frame.spsr,
        esr: 0,
        far: 0,
    };
    f.x[0] = 0;
    if a.newsp != 0 {
        f.sp_el0 = a.newsp;
    }
    prepare_user(child, f);
    // SAFETY: the child has not run; the parent's FP registers are live on this CPU.
    context::save_fp(unsafe { &mut *child.fp.get() });
    let tls = if a.flags & CLONE_SETTLS != 0 {
        a.tls
    } else {
        crate::arch::aarch64::regs::read_sysreg!(tpidr_el0)
    };
    child.tpidr_el0.store(tls, Ordering::Relaxed);
    if a.flags & CLONE_CHILD_SETTID != 0 {
        child.set_child_tid.store(a.child_tid, Ordering::Relaxed);
    }
    if a.flags & CLONE_CHILD_CLEARTID != 0 {
        child.clear_child_tid.store(a.child_tid, Ordering::Relaxed);
    }
    child.signals.with(|s| *s = signals);
    child
        .affinity
        .store(parent.affinity.load(Ordering::Relaxed), Ordering::Relaxed);
    task::insert(child.clone());
    if a.flags & CLONE_PARENT_SETTID != 0 {
        let _ = uaccess::write_user(a.parent_tid as usize, &child.pid());
    }
    sched::start(child);
}

/// clone() with CLONE_THREAD: a new thread of the caller's process, sharing its
/// address space, signal actions and limits (and files with CLONE_FILES), starting
/// on `newsp` with x0 = 0 and TPIDR_EL0 = `tls` (CLONE_SETTLS). The flags were
/// checked by the caller (`syscall::process::clone`).
pub fn clone_thread(frame: &TrapFrame, args: &CloneArgs) -> Result<Pid, Errno> {
    if task::count() >= crate::fs::sysctl::threads_max() {
        return Err(EAGAIN);
    }
    let parent = me();
    if parent.group.exiting.load(Ordering::Acquire)
        || parent.group.exec_task.load(Ordering::Acquire) != 0
    {
        return Err(EAGAIN);
    }
    let tid = task::alloc_pid();
    let child = after_reclaim(|| {
        let files = (args.flags & CLONE_FILES == 0).then(|| parent.files.lock().clone());
        Task::new_thread(tid, &parent, files).ok_or(ENOMEM)
    })?;
    // The actions are the process's, the mask the creating thread's, nothing pending.
    let signals = parent.signals.with(|s| s.new_thread());
    start_child(&parent, &child, frame, args, signals);
    Ok(tid)
}

/// Replace the caller's program. On success the frame returns to the new entry point.
pub fn exec(
    frame: &mut TrapFrame,
    path: &str,
    argv: &[&[u8]],
    envp: &[&[u8]],
) -> Result<(), Errno> {
    let mut image = exec::load(path, argv, envp)?;
    let t = me();
    end_other_threads(&t)?;
    // The robust futexes the thread holds in the old address space are released
    // before it goes (Linux's exec_mm_release).
    super::futex::exit_robust_list(&t);
    // PR_SET_THP_DISABLE survives exec, as on Linux.
    image.mm.thp_disabled = t.mm.lock().as_ref().is_some_and(|m| m.thp_disabled);
    // Leave the old tables before they are freed.
    let ttbr0 = image.mm.tables.ttbr0();
    t.ttbr0.store(ttbr0, Ordering::Release);
    crate::arch::aarch64::mm::machine::install_ttbr0(ttbr0);
    let old = t.mm.lock().replace(image.mm);
    drop(old);
    *t.name.lock() = String::from(basename(path));
    *frame = user_frame(image.entry, image.sp);
    t.tpidr_el0.store(0, Ordering::Relaxed);
    crate::arch::aarch64::regs::write_sysreg!(tpidr_el0, 0);
    context::load_fp(&FpState::default());
    t.clear_child_tid.store(0, Ordering::Relaxed);
    t.signals.with(|s| s.exec());
    t.files.lock().close_on_exec();
    Ok(())
}

/// exec in a process with other threads ends them first (Linux's de_thread): each
/// is killed alone (`Task::doomed`) and the caller waits, giving up its CPU, until
/// it is the only one. A caller that is not the leader then takes the leader's place
/// once the leader, a zombie, is off its CPU (`task::take_leadership`): its tid
/// becomes the process id, and the parent waits for the same pid. EAGAIN if the
/// process is exiting or another thread is exec'ing (whose SIGKILL then ends this
/// one on its way back to EL0), as Linux's.
fn end_other_threads(t: &Arc<Task>) -> Result<(), Errno> {
    let group = &t.group;
    if t.is_leader() && group.live.load(Ordering::Acquire) == 1 {
        return Ok(());
    }
    if group.exiting.load(Ordering::Acquire)
        || group
            .exec_task
            .compare_exchange(0, t.pid(), Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return Err(EAGAIN);
    }
    // Killed again each round: a clone that passed its `exec_task` check just before
    // it was set makes a thread the first round did not see.
    while group.live.load(Ordering::Acquire) > 1 {
        if group.exiting.load(Ordering::Acquire) {
            group.exec_task.store(0, Ordering::Release);
            return Err(EAGAIN);
        }
        kill_other_threads(t, true);
        sched::schedule();
    }
    if !t.is_leader() {
        let leader = task::get(t.tgid)
            .expect("a process's leader stays in the task table until it is reaped");
        while leader.state() != State::Zombie || leader.on_cpu.load(Ordering::Acquire) != 0 {
            sched::schedule();
        }
        drop(leader);
        drop(task::take_leadership(t));
    }
    group.exec_task.store(0, Ordering::Release);
    Ok(())
}

/// SIGKILL to every thread of `t`'s process but `t` that has not exited; `alone`
/// (exec) makes each end as a thread only (`Task::doomed`), not the process.
fn kill_other_threads(t: &Task, alone: bool) {
    for other in task::threads_of(t.tgid)
        .iter()
        .filter(|o| o.pid() != t.pid() && !matches!(o.state(), State::Zombie | State::Dead))
    {
        if alone {
            other.doomed.store(true, Ordering::Release);
        }
        let kill = SigInfo {
            signo: SIGKILL,
            code: SI_KERNEL,
            cause: Cause::None,
        };
        deliver::send(other, kill);
    }
}

/// Give back what the calling process holds but its kernel stack: its memory (after
/// leaving its tables) and its files.
fn release(t: &Task) {
    leave_tables(t);
    let mm = t.mm.lock().take();
    if mm.is_some() {
        RELEASING.fetch_add(1, Ordering::AcqRel);
        drop(mm);
        RELEASING.fetch_sub(1, Ordering::AcqRel);
    }
    let files = core::mem::replace(&mut *t.files.lock(), crate::fs::Files::empty());
    drop(files);
}

/// The calling thread stops using its process's page tables (this CPU switches to
/// the empty ones).
fn leave_tables(t: &Task) {
    t.ttbr0.store(0, Ordering::Release);
    crate::arch::aarch64::mmu::set_ttbr0_raw(crate::arch::aarch64::mm::kmap::empty_ttbr0());
}

/// The calling thread `t` leaves its address space (exit, the last process's
/// shutdown), in Linux's order (`exit_mm_release`): the robust futexes it holds are
/// marked FUTEX_OWNER_DIED and woken (`futex::exit_robust_list`), then its
/// CLONE_CHILD_CLEARTID word is zeroed and woken.
fn exit_mm_release(t: &Task) {
    super::futex::exit_robust_list(t);
    clear_child_tid(t);
}

/// CLONE_CHILD_CLEARTID / set_tid_address: zero the word and wake one futex waiter
/// on it (what pthread_join sleeps on), with a shared wake as Linux's mm_release.
fn clear_child_tid(t: &Task) {
    let tid_ptr = t.clear_child_tid.swap(0, Ordering::AcqRel);
    if tid_ptr != 0 && uaccess::write_user(tid_ptr as usize, &0u32).is_ok() {
        super::futex::wake(t, tid_ptr, true, 1, u32::MAX);
    }
}

/// End the calling process with wait status `status` (Linux encoding): exit_group,
/// a fatal signal, a fault with no handler. The first of these in a process sets the
/// status; every other thread is killed and ends as a thread.
pub fn exit(status: u32) -> ! {
    let t = me();
    if !t.group.exiting.swap(true, Ordering::AcqRel) {
        t.group.code.store(status, Ordering::Release);
        kill_other_threads(&t, false);
    }
    drop(t);
    end_thread(status)
}

/// End the calling thread `t`, one of several: the others go on in the address space.
/// A leader stays a zombie in the task table until the process ends and its parent
/// reaps it; another thread leaves the table, and its CPU drops the last count
/// (`sched::finish_switch`).
fn end_one_of_several(t: Arc<Task>, exiting: bool) -> ! {
    leave_tables(&t);
    if t.is_leader() {
        t.set_state(State::Zombie);
    } else {
        t.set_state(State::Dead);
        task::remove(t.pid());
    }
    // A process signal this thread was told of goes to another.
    if !exiting {
        deliver::retarget(&t);
    }
    drop(t);
    sched::schedule();
    unreachable!("an exited thread was scheduled");
}

/// End the calling thread (exit(2)); the last thread to end ends the process, with
/// the status exit_group set, else the leader's, else its own.
pub fn end_thread(status: u32) -> ! {
    let t = me();
    exit_mm_release(&t);
    let exiting = t.group.exiting.load(Ordering::Acquire);
    // (A leader another thread's exec ends leaves the status to that thread.)
    if t.is_leader() && !exiting && !t.doomed.load(Ordering::Acquire) {
        t.group.code.store(status, Ordering::Release);
    }
    if t.group.live.fetch_sub(1, Ordering::AcqRel) != 1 {
        end_one_of_several(t, exiting);
    }
    let status = if t.is_leader() && !exiting {
        status
    } else {
        t.group.code.load(Ordering::Acquire)
    };
    release(&t);
    audit_if_quiet(&t);
    if t.tgid == 1 {
        let code = if status & 0x7f == 0 {
            (status >> 8) & 0xff
        } else {
            128 + (status & 0x7f)
        };
        shutdown(code, format_args!("init exited with status {code}"));
    }
    if let Some(leader) = task::get(t.tgid) {
        leader.exit_status.store(status, Ordering::Release);
    }
    let (leader, parent, reparented) = task::become_zombie(&t);
    if !t.is_leader() {
        t.set_state(State::Dead);
        task::remove(t.pid());
    }
    let (code, status) = if status & 0x7f == 0 {
        (CLD_EXITED, (status >> 8) & 0xff)
    } else {
        (CLD_KILLED, status & 0x7f)
    };
    let sigchld = SigInfo {
        signo: SIGCHLD,
        code,
        cause: Cause::Child {
            pid: t.tgid,
            status: status as i32,
        },
    };
    drop((t, leader));
    deliver::send_process(&parent, sigchld);
    parent.group.child_exit.wake_all();
    // Children that were zombies already are init's to reap now.
    if reparented && parent.pid() != 1 {
        if let Some(init) = task::get(1) {
            init.group.child_exit.wake_all();
        }
    }
    drop(parent);
    sched::schedule();
    unreachable!("a zombie was scheduled");
}

/// Frames free for user memory: the allocator's and those on the hugetlb pools' free
/// lists (a pool page in use when the machine stops is a leak like any other).
fn free_frames() -> usize {
    crate::mm::frame::frames().free_frames() + crate::mm::hugetlb::free_frames()
}

/// Free frames when /init started, to check that everything came back.
static FREE_AT_INIT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// The machine stops (init exited, or reboot(2)): the caller's memory is released, and
/// if no other task is left every frame but the caller's kernel stack must be back in
/// the allocator. Powers off with `code`, or 1 if frames leaked.
pub fn shutdown(code: u32, why: core::fmt::Arguments<'_>) -> ! {
    let t = me();
    exit_mm_release(&t);
    release(&t);
    super::khugepaged::stop();
    super::kswapd::stop();
    crate::fs::exception_trace::flush();
    #[cfg(feature = "ktest")]
    kprintln!("contkernel: {}", crate::arch::irq::stretch::Report);
    let others = task::count() - 1;
    // Nothing maps the huge zero page any more: give it back, as reclaim would.
    crate::mm::zero::shrink();
    let before = FREE_AT_INIT.load(Ordering::Relaxed);
    let now = free_frames() + (1 << task::KSTACK_ORDER);
    if others == 0 {
        let leaked = before as i64 - now as i64;
        kprintln!("contkernel: {why}; frames not returned: {leaked}");
        power::exit(if leaked != 0 && code == 0 { 1 } else { code })
    }
    kprintln!("contkernel: {why}; {others} other tasks still exist: frames not checked");
    power::exit(code)
}

/// With the checker on (test builds): when a child of init exits and only init is
/// left (init waits for it, nothing else runs), audit the folio accounting against
/// init's page tables, the only ones left. A disagreement is a kernel bug: panic.
fn audit_if_quiet(t: &Task) {
    if !crate::arch::aarch64::mm::machine::config().check
        || t.parent.load(Ordering::Acquire) != 1
        || task::count()
            != 2 + !t.is_leader() as usize
                + super::khugepaged::running() as usize
                + super::kswapd::running() as usize
    {
        return;
    }
    let Some(init) = task::get(1) else { return };
    let mm = init.mm.lock();
    match crate::mm::audit::check(mm.iter()) {
        Ok(n) => log::debug!(
            "audit after {} exited: {n} folios agree with the page tables",
            t.name.lock().as_str()
        ),
        Err(e) => panic!(
            "folio accounting audit after {} exited: {e}",
            t.name.lock().as_str()
        ),
    }
}

/// wait4: a zombie child matching `pid` (-1: any), reaped; `None` with WNOHANG if none yet.
pub fn wait(pid: i64, options: u64) -> Result<Option<Arc<Task>>, Errno> {
    if options & !(WNOHANG | WUNTRACED | WALL | WCLONE) != 0 {
        return Err(EINVAL);
    }
    let t = me();
    let matches = move |c: &Arc<Task>| pid <= 0 || c.pid() as i64 == pid;
    let reapable =
        |c: &Arc<Task>| c.state() == State::Zombie && c.group.dead.load(Ordering::Acquire);
    loop {
        let children: Vec<Arc<Task>> = task::children(t.tgid).into_iter().filter(matches).collect();
        if children.is_empty() {
            return Err(ECHILD);
        }
        if let Some(z) = children.iter().find(|c| reapable(c)) {
            // Its CPU is finishing the switch away from it (see sched's protocol),
            // and so are the CPUs of its other threads, whose stacks go with their
            // last counts.
            while z.on_cpu.load(Ordering::Acquire) != 0
                || z.group.freed.load(Ordering::Acquire) != z.group.made.load(Ordering::Acquire)
            {
                core::hint::spin_loop();
            }
            task::remove(z.pid());
            return Ok(Some(z.clone()));
        }
        if options & WNOHANG != 0 {
            return Ok(None);
        }
        if t.signals.interrupted() {
            return Err(ERESTARTSYS);
        }
        let me_pid = t.tgid;
        t.group.child_exit.wait_until(|| {
            t.signals.interrupted()
                || task::children(me_pid)
                    .iter()
                    .any(|c| matches(c) && reapable(c))
        });
    }
}

/// A synchronous exception from EL0 that is not a system call.
/// Handled with IRQs on, as a system call is (the tick and IPIs are taken meanwhile).
pub fn user_sync(frame: &mut TrapFrame) {
    crate::arch::irq::entered_from_el0();
    crate::arch::irq::enable();
    handle_user_sync(frame);
    crate::arch::irq::disable();
}

fn handle_user_sync(frame: &mut TrapFrame) {
    let esr = Esr(frame.esr);
    let access = match esr.ec() {
        ExceptionClass::DataAbortLower if esr.is_write() => Some(Access::Write),
        ExceptionClass::DataAbortLower => Some(Access::Read),
        ExceptionClass::InstrAbortLower => Some(Access::Exec),
        _ => None,
    };
    if access.is_some() && !esr.is_mm_fault() {
        // Alignment, external abort, TLB conflict...: nothing the page tables can fix
        // (the access would only fault again); the signal Linux sends for the code.
        let (sig, code) = match esr.abort_signal() {
            AbortSignal::Segv("SEGV_MTESERR") => (SIGSEGV, SEGV_MTESERR),
            AbortSignal::Segv(_) => (SIGSEGV, SEGV_ACCERR),
            AbortSignal::Bus("BUS_ADRALN") => (SIGBUS, BUS_ADRALN),
            AbortSignal::Bus(_) => (SIGBUS, BUS_OBJERR),
            AbortSignal::Kill => kill_for_fault(frame, SIGKILL, "SI_KERNEL"),
        };
        return deliver::fault_signal(frame, sig, code, frame.far);
    }
    if let Some(access) = access {
        let t = me();
        let r = fault_in(&t, VirtAddr(frame.far), access);
        drop(t);
        return match r {
            Ok(()) => {}
            Err(FaultError::Oom) => kill_for_fault(frame, SIGKILL, &oom_report()),
            Err(FaultError::Segv) => {
                let code = if frame.far as usize >= uaccess::USER_END {
                    match esr.abort_signal() {
                        AbortSignal::Segv("SEGV_ACCERR") => SEGV_ACCERR,
                        _ => SEGV_MAPERR,
                    }
                } else {
                    deliver::segv_code(frame.far)
                };
                deliver::fault_signal(frame, SIGSEGV, code, frame.far)
            }
            Err(FaultError::Bus) => deliver::fault_signal(frame, SIGBUS, BUS_ADRERR, frame.far),
            // The Mm lock is dropped: wait for the handler, then the access retries.
            Err(FaultError::Userfault(uffd)) => {
                super::userfault::wait(&me(), uffd, VirtAddr(frame.far), access == Access::Write)
            }
        };
    }
    let (sig, code) = match esr.ec() {
        ExceptionClass::Unknown => (SIGILL, ILL_ILLOPC),
        ExceptionClass::PcAlignment | ExceptionClass::SpAlignment => (SIGBUS, BUS_ADRALN),
        ExceptionClass::Brk | ExceptionClass::BreakpointLower | ExceptionClass::StepLower => {
            (SIGTRAP, TRAP_BRKPT)
        }
        _ => (SIGSEGV, SI_KERNEL),
    };
    let addr = match esr.ec() {
        ExceptionClass::PcAlignment | ExceptionClass::SpAlignment => frame.far,
        _ => frame.elr,
    };
    deliver::fault_signal(frame, sig, code, addr)
}

/// Why a fault found no memory: what was left, and whether reclaim still had anything
/// to give.
fn oom_report() -> alloc::string::String {
    let f = crate::mm::frame::frames();
    alloc::format!(
        "out of memory ({} of {} KiB free, {} lazyfree entries listed, {} deferred splits)",
        f.free_frames() * 4,
        f.managed_frames() * 4,
        crate::mm::lazyfree::list_len(),
        crate::mm::folio::deferred_count()
    )
}

/// Kill the current process for a fault it has no handler for, with a one-line
/// report (counted instead while `/proc/sys/debug/exception-trace` is 0:
/// `fs/exception_trace.rs`). `exit` does not return, so nothing held here may be
/// left to drop.
pub fn kill_for_fault(frame: &TrapFrame, sig: u32, why: &str) -> ! {
    let t = me();
    let esr = Esr(frame.esr);
    let name = t.name.lock().clone();
    let what = if esr.is_abort() {
        alloc::format!(
            "{}, {} ({}) at {:#x}",
            esr.ec(),
            esr.fault_status(),
            esr.access(),
            frame.far
        )
    } else {
        alloc::format!("{} (ESR {:#x})", esr.ec(), frame.esr)
    };
    let sig_name = signal_name(sig).unwrap_or("SIGKILL");
    let pid = t.pid();
    drop(t);
    if crate::fs::exception_trace::report_kill(sig) {
        kprintln!(
            "contkernel: killed {name} (pid {pid}): {sig_name}: {what}, pc {:#x}{}{why}",
            frame.elr,
            if why.is_empty() { "" } else { ": " }
        );
    }
    exit(signaled(sig))
}

/// An EL1 user-access routine faulted on a user address: resolve it like a user fault.
pub fn uaccess_fault(far: usize, write: bool) -> bool {
    let Some(t) = sched::current() else {
        return false;
    };
    let access = if write { Access::Write } else { Access::Read };
    fault_in(&t, VirtAddr(far as u64), access).is_ok()
}

/// A memory-management fault of task `t` at `va`, from EL0 or from a user access of
/// the kernel: the stack grows down to it if it is just below (`stack::grow`), the
/// address space resolves it, and a resolved one counts as a minor fault
/// (getrusage's ru_minflt).
/// Times a fault that ran out of memory goes again after a reclaim pass run without
/// its `Mm` lock gave something back (`mm::reclaim::unlocked`), before the
/// out-of-memory kill.
const OOM_RETRIES: usize = 4;

/// Address spaces being torn down by an exiting process: memory on its way back.
static RELEASING: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// How long a fault out of memory waits, a millisecond at a time (no lock held), then
/// goes again, while memory is on its way back: some process is exiting (its address
/// space is freed a batch at a time, possibly on this CPU), or lazyfree entries are
/// still listed (their owners were busy: another faulting process holds its own lock
/// while it reclaims). Linux's out-of-memory killer likewise kills no one while a task
/// that will free memory exits (`task_will_free_mem`), and its allocator retries while
/// reclaim can still make progress. A process that freed 32 MiB as it exited beside a
/// faulting one was killing it (thp_lazyfree, pressure after fork); a soak's stress
/// child was killed with 40 entries listed.
const EXIT_WAIT_MS: u64 = 1000;

fn fault_in(t: &Task, va: VirtAddr, access: Access) -> Result<(), FaultError> {
    let mut retries = 0;
    let mut waited_ms = 0;
    loop {
        let r = match t.mm.lock().as_mut() {
            Some(mm) => {
                super::stack::grow(&mut mm.vmas, va);
                mm.handle_fault(va, access)
            }
            None => Err(FaultError::Segv),
        };
        match r {
            Err(FaultError::Oom)
                if retries < OOM_RETRIES
                    && crate::mm::reclaim::unlocked::<
                        crate::arch::aarch64::mm::machine::KernelMachine,
                    >(1) =>
            {
                retries += 1;
            }
            Err(FaultError::Oom)
                if waited_ms < EXIT_WAIT_MS
                    && (RELEASING.load(Ordering::Acquire) > 0
                        || crate::mm::lazyfree::list_len() > 0) =>
            {
                // A spin, not a sleep (this may be a kernel access to user memory),
                // giving the CPU up when the tick asks: the exiting one may be here;
                // and a pass with no lock held, which may reach our own entries.
                waited_ms += 1;
                crate::time::spin_for(1_000_000);
                sched::cond_resched();
                crate::mm::reclaim::unlocked::<crate::arch::aarch64::mm::machine::KernelMachine>(1);
            }
            Ok(()) => {
                t.minflt.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            r => return r,
        }
    }
}

/// Last thing before returning to EL0: give up the CPU if the tick asked for it, then
/// act on pending signals (`deliver`), which may change the frame.
pub fn return_to_user(frame: &mut TrapFrame) {
    sched::cond_resched();
    if me().signals.attention() {
        crate::arch::irq::enable();
        deliver::deliver(frame);
        crate::arch::irq::disable();
    }
    crate::arch::irq::leaving_for_el0();
}
