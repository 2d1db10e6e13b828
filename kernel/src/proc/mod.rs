//! Processes: tasks and the task table (`task`), the scheduler (`sched`), the life of a
//! process (`process`: init, fork, exec, exit, wait, faults, kernel threads), and what
//! exec needs: the executable format (`elf`), the initial ramdisk (`initramfs`), the
//! initial user stack (`stack`) and the loader itself (`exec`).

pub mod elf;
#[cfg(target_os = "none")]
pub mod exec;
pub mod initramfs;
#[cfg(target_os = "none")]
pub mod process;
#[cfg(target_os = "none")]
pub mod sched;
pub mod stack;
#[cfg(target_os = "none")]
pub mod task;
