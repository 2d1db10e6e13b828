//! Spin locks. `IrqSpinLock`: interrupts are masked on the local CPU while the lock is
//! held, so an interrupt handler on the same CPU can never spin on a lock its own CPU
//! holds; for anything an interrupt handler takes (the run queue, sleepers, frames,
//! heap, console). `SpinLock`: leaves interrupts alone, for data no interrupt handler
//! ever touches, so that long critical sections (a fork, a fault that zeroes 2 MiB)
//! do not delay the tick and IPIs. The kernel is not preempted (only on the way back to
//! EL0), so a holder is never switched out while it spins or holds one.

/// A spin lock that does not mask interrupts: only for data no interrupt handler takes.
pub type SpinLock<T> = spin::Mutex<T>;

use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};

use crate::arch::irq;

pub struct IrqSpinLock<T> {
    inner: spin::Mutex<T>,
}

pub struct IrqSpinLockGuard<'a, T> {
    guard: ManuallyDrop<spin::MutexGuard<'a, T>>,
    saved: irq::IrqState,
}

impl<T> IrqSpinLock<T> {
    pub const fn new(value: T) -> Self {
        Self {
            inner: spin::Mutex::new(value),
        }
    }

    #[track_caller]
    pub fn lock(&self) -> IrqSpinLockGuard<'_, T> {
        let saved = irq::save_and_disable();
        IrqSpinLockGuard {
            guard: ManuallyDrop::new(self.inner.lock()),
            saved,
        }
    }

    #[track_caller]
    pub fn try_lock(&self) -> Option<IrqSpinLockGuard<'_, T>> {
        let saved = irq::save_and_disable();
        match self.inner.try_lock() {
            Some(g) => Some(IrqSpinLockGuard {
                guard: ManuallyDrop::new(g),
                saved,
            }),
            None => {
                irq::restore(saved);
                None
            }
        }
    }
}

impl<T> Deref for IrqSpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqSpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for IrqSpinLockGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard is dropped exactly once, here, before interrupts come back.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        irq::restore(self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_excludes_second_locker_until_dropped() {
        let l = IrqSpinLock::new(5);
        let g = l.lock();
        assert!(l.try_lock().is_none());
        drop(g);
        *l.lock() += 1;
        assert_eq!(*l.try_lock().unwrap(), 6);
    }
}
