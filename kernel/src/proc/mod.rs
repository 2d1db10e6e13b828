//! Processes: tasks, threads and the task table (`task`), the scheduler (`sched`), the
//! life of a process (`process`: init, fork, threads, exec, exit, wait, faults),
//! kernel threads (`kthread`), futexes (`futex`) and the robust lists walked at thread
//! exit (`robust`), the address-space lock (`mmlock`), userfaultfd contexts and their
//! waits (`userfault`), the collapse thread that walks every process's memory
//! (`khugepaged`, over the engine of `mm::collapse`), the reclaim thread (`kswapd`,
//! over `mm::reclaim`), and what exec needs: the executable format (`elf`), the
//! initial user stack (`stack`) and the loader itself (`exec`), which reads programs
//! from the root filesystem (`fs::root`, the initramfs).

#[cfg(target_os = "none")]
pub mod deliver;
pub mod elf;
#[cfg(target_os = "none")]
pub mod exec;
#[cfg(target_os = "none")]
pub mod futex;
#[cfg(target_os = "none")]
pub mod khugepaged;
#[cfg(target_os = "none")]
pub mod kswapd;
#[cfg(target_os = "none")]
pub mod kthread;
#[cfg(target_os = "none")]
pub mod mmlock;
#[cfg(target_os = "none")]
pub mod pipe;
#[cfg(target_os = "none")]
#[allow(unsafe_code)] // a new task's first context and FP state (see the crate doc)
pub mod process;
pub mod robust;
#[cfg(target_os = "none")]
#[allow(unsafe_code)] // the context switch (see the crate doc)
pub mod sched;
pub mod signal;
pub mod stack;
#[cfg(target_os = "none")]
#[allow(unsafe_code)] // Task's Send/Sync over its scheduler-owned cells
pub mod task;
#[cfg(target_os = "none")]
pub mod userfault;
