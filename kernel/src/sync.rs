//! Spin locks. `IrqSpinLock`: interrupts are masked on the local CPU while the lock is
//! held, so an interrupt handler on the same CPU can never spin on a lock its own CPU
//! holds; for anything an interrupt handler takes (the run queue, sleepers, frames,
//! heap, console). `SpinLock`: leaves interrupts alone, for data no interrupt handler
//! ever touches, so that long critical sections (a fork, a fault that zeroes 2 MiB)
//! do not delay the tick and IPIs. The kernel is not preempted (only on the way back to
//! EL0), so a holder is never switched out while it spins or holds one.

/// A spin lock that does not mask interrupts: only for data no interrupt handler takes.
pub type SpinLock<T> = spin::Mutex<T>;

use core::ops::{Deref, DerefMut};

use crate::arch::irq;

pub struct IrqSpinLock<T> {
    inner: spin::Mutex<T>,
}

pub struct IrqSpinLockGuard<'a, T> {
    // Fields drop in declaration order: the lock is released before interrupts come
    // back, so no handler on this CPU can find it held.
    guard: spin::MutexGuard<'a, T>,
    _saved: Restore,
}

/// The interrupt mask as it was before the lock: put back when dropped.
struct Restore(irq::IrqState);

impl Drop for Restore {
    fn drop(&mut self) {
        irq::restore(self.0);
    }
}

impl<T> IrqSpinLock<T> {
    pub const fn new(value: T) -> Self {
        Self {
            inner: spin::Mutex::new(value),
        }
    }

    #[track_caller]
    pub fn lock(&self) -> IrqSpinLockGuard<'_, T> {
        let saved = Restore(irq::save_and_disable());
        IrqSpinLockGuard {
            guard: self.inner.lock(),
            _saved: saved,
        }
    }

    #[track_caller]
    pub fn try_lock(&self) -> Option<IrqSpinLockGuard<'_, T>> {
        let saved = Restore(irq::save_and_disable());
        // Not taken: `saved` drops here and puts the mask back.
        self.inner.try_lock().map(|guard| IrqSpinLockGuard {
            guard,
            _saved: saved,
        })
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
