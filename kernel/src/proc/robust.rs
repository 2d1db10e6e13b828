//! Robust futex lists: how a lock a thread dies holding is handed to the next taker
//! (glibc's robust mutexes, `pthread_mutexattr_setrobust`). Each thread registers
//! with `set_robust_list` the head of a list, in its own memory, of the futexes it
//! holds; when it exits (or execs) the kernel walks the list as Linux's
//! `exit_robust_list` does (`kernel/futex/core.c`), sets FUTEX_OWNER_DIED in each
//! futex whose owner field is the dying thread's tid and wakes one waiter, so that
//! the next `pthread_mutex_lock` returns EOWNERDEAD instead of sleeping for ever.
//!
//! Everything the walk reads is user memory the process may have scribbled over, so
//! it is bounded: at most `ROBUST_LIST_LIMIT` entries (a circular list ends there), a
//! read that faults ends it, a misaligned futex ends it, and a word another thread
//! keeps changing is given up after `CAS_RETRIES` tries (Linux retries without
//! bound). The list is the user's, so the walk allocates nothing. Nothing here
//! touches the machine: `proc::futex` reads and swaps the words with the user-access
//! routines and wakes the waiters; the host tests below run the walk on a map.
//!
//! The layout (`struct robust_list_head`, 24 bytes): the list's first entry, the
//! offset from an entry to its futex word (signed), and `list_op_pending`, an entry
//! the thread was about to add or remove when it died (handled last, once). Bit 0 of
//! an entry pointer marks a PI futex (never woken here: PI futexes are ENOSYS).

/// `sizeof(struct robust_list_head)`: the only length set_robust_list accepts.
pub const ROBUST_HEAD_SIZE: u64 = 24;
/// Linux's bound on the entries one walk visits.
pub const ROBUST_LIST_LIMIT: u32 = 2048;
/// Tries of the compare-and-swap on one futex word before the walk gives it up.
const CAS_RETRIES: u32 = 64;

/// The futex word's bits (`linux/futex.h`).
pub const FUTEX_WAITERS: u32 = 0x8000_0000;
pub const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
pub const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

/// The dying thread's memory, as the walk needs it: every access may fail (`None`),
/// which ends the walk.
pub trait UserWords {
    fn read_u64(&mut self, addr: u64) -> Option<u64>;
    fn read_u32(&mut self, addr: u64) -> Option<u32>;
    /// Replace `old` with `new` atomically if the word holds it; the value found.
    fn cmpxchg_u32(&mut self, addr: u64, old: u32, new: u32) -> Option<u32>;
    /// Wake one waiter of the futex at `addr`, as a shared wake (glibc's robust
    /// mutexes wait shared, since the kernel's wake is: Linux's FLAGS_SHARED).
    fn wake_one(&mut self, addr: u64);
}

/// Walk the robust list at `head` of the thread `tid`, which is exiting or
/// exec'ing (Linux's `exit_robust_list`).
pub fn exit_robust_list(head: u64, tid: u32, mem: &mut impl UserWords) {
    let Some(first) = mem.read_u64(head) else {
        return;
    };
    let Some(offset) = mem.read_u64(head.wrapping_add(8)) else {
        return;
    };
    let Some(pending) = mem.read_u64(head.wrapping_add(16)) else {
        return;
    };
    let (pending, pending_pi) = split(pending);
    let (mut entry, mut pi) = split(first);
    let mut limit = ROBUST_LIST_LIMIT;
    while entry != head {
        // The next entry is read before this one's futex is released to a waiter,
        // who may unlink it at once.
        let next = mem.read_u64(entry);
        // A pending entry may be on the list already: it is handled once, last.
        if entry != pending && futex_death(entry.wrapping_add(offset), tid, pi, false, mem).is_err()
        {
            return;
        }
        let Some(next) = next else {
            return;
        };
        (entry, pi) = split(next);
        limit -= 1;
        if limit == 0 {
            break;
        }
    }
    if pending != 0 {
        let _ = futex_death(pending.wrapping_add(offset), tid, pending_pi, true, mem);
    }
}

/// An entry pointer and its PI bit.
fn split(p: u64) -> (u64, bool) {
    (p & !1, p & 1 != 0)
}

/// The walk cannot go on (Linux's -1 from `handle_futex_death`).
struct Stop;

/// One futex of the dying thread `tid` (Linux's `handle_futex_death`): if it owns
/// it, mark it FUTEX_OWNER_DIED (keeping FUTEX_WAITERS, dropping the tid) and wake
/// one waiter if there were any. A pending operation on a futex nobody owns (the
/// thread died between releasing it and waking a waiter, or a woken waiter died
/// before taking it) wakes a waiter and changes nothing.
fn futex_death(
    addr: u64,
    tid: u32,
    pi: bool,
    pending: bool,
    mem: &mut impl UserWords,
) -> Result<(), Stop> {
    if !addr.is_multiple_of(4) {
        return Err(Stop);
    }
    for _ in 0..CAS_RETRIES {
        let val = mem.read_u32(addr).ok_or(Stop)?;
        let owner = val & FUTEX_TID_MASK;
        if pending && !pi && owner == 0 {
            mem.wake_one(addr);
            return Ok(());
        }
        if owner != tid {
            return Ok(());
        }
        let marked = (val & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
        if mem.cmpxchg_u32(addr, val, marked).ok_or(Stop)? != val {
            continue;
        }
        if !pi && val & FUTEX_WAITERS != 0 {
            mem.wake_one(addr);
        }
        return Ok(());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// User memory as a map of 4-byte words; every access counted, and a walk that
    /// reads too much fails the test instead of hanging it.
    #[derive(Default)]
    struct Mem {
        words: BTreeMap<u64, u32>,
        woken: Vec<u64>,
        reads: u32,
        /// The word another thread changes before each swap (a contended futex).
        contended: Option<u64>,
    }

    impl Mem {
        fn put64(&mut self, addr: u64, v: u64) {
            self.words.insert(addr, v as u32);
            self.words.insert(addr + 4, (v >> 32) as u32);
        }
        fn word(&self, addr: u64) -> u32 {
            self.words[&addr]
        }
    }

    impl UserWords for Mem {
        fn read_u64(&mut self, addr: u64) -> Option<u64> {
            let lo = self.read_u32(addr)?;
            let hi = self.read_u32(addr + 4)?;
            Some(u64::from(lo) | u64::from(hi) << 32)
        }
        fn read_u32(&mut self, addr: u64) -> Option<u32> {
            self.reads += 1;
            assert!(self.reads < 100_000, "the walk is not bounded");
            self.words.get(&addr).copied()
        }
        fn cmpxchg_u32(&mut self, addr: u64, old: u32, new: u32) -> Option<u32> {
            if self.contended == Some(addr) {
                *self.words.get_mut(&addr)? ^= FUTEX_WAITERS;
            }
            let w = self.words.get_mut(&addr)?;
            let found = *w;
            if found == old {
                *w = new;
            }
            Some(found)
        }
        fn wake_one(&mut self, addr: u64) {
            self.woken.push(addr);
        }
    }

    const HEAD: u64 = 0x1000;
    const TID: u32 = 77;
    /// Entries at 0x2000 + 0x100 * i, their futex words OFFSET above them (glibc's
    /// offset is negative: the lock word comes first in pthread_mutex_t; both signs
    /// are tested).
    const OFFSET: u64 = 0x20;

    fn entry(i: u64) -> u64 {
        0x2000 + 0x100 * i
    }

    /// A list head at HEAD with these entries in order, each futex word as given.
    fn list(words: &[u32], offset: u64, pending: u64) -> Mem {
        let mut m = Mem::default();
        let mut prev = HEAD;
        for (i, &w) in words.iter().enumerate() {
            let e = entry(i as u64);
            m.put64(prev, e);
            m.words.insert(e.wrapping_add(offset), w);
            prev = e;
        }
        m.put64(prev, HEAD);
        m.put64(HEAD + 8, offset);
        m.put64(HEAD + 16, pending);
        m
    }

    #[test]
    fn owned_futexes_are_marked_owner_died_and_one_waiter_woken() {
        let words = [TID, TID | FUTEX_WAITERS, 5, 5 | FUTEX_WAITERS, 0];
        let mut m = list(&words, OFFSET, 0);
        exit_robust_list(HEAD, TID, &mut m);
        let w = |i| m.word(entry(i) + OFFSET);
        assert_eq!(w(0), FUTEX_OWNER_DIED);
        assert_eq!(w(1), FUTEX_OWNER_DIED | FUTEX_WAITERS);
        assert_eq!(w(2), 5, "another thread's futex changed");
        assert_eq!(w(3), 5 | FUTEX_WAITERS);
        assert_eq!(w(4), 0);
        assert_eq!(
            m.woken,
            [entry(1) + OFFSET],
            "a wake without waiters, or none"
        );
    }

    #[test]
    fn a_negative_futex_offset_reaches_words_below_the_entries() {
        let back = (-8i64) as u64;
        let mut m = list(&[TID | FUTEX_WAITERS], back, 0);
        exit_robust_list(HEAD, TID, &mut m);
        assert_eq!(m.word(entry(0) - 8), FUTEX_OWNER_DIED | FUTEX_WAITERS);
    }

    #[test]
    fn a_circular_list_ends_at_the_limit() {
        let mut m = list(&[TID, TID], OFFSET, 0);
        // The second entry points back at the first: the list never reaches HEAD.
        m.put64(entry(1), entry(0));
        exit_robust_list(HEAD, TID, &mut m);
        assert_eq!(m.word(entry(0) + OFFSET), FUTEX_OWNER_DIED);
        assert_eq!(m.word(entry(1) + OFFSET), FUTEX_OWNER_DIED);
        // Per entry: the next pointer (2 reads) and the futex word (1).
        assert!(m.reads <= 3 * ROBUST_LIST_LIMIT + 8, "{} reads", m.reads);
    }

    #[test]
    fn a_bad_pointer_ends_the_walk_after_the_entry_that_holds_it() {
        let mut m = list(&[TID, TID, TID], OFFSET, 0);
        m.put64(entry(0), 0xdead_0000);
        exit_robust_list(HEAD, TID, &mut m);
        assert_eq!(m.word(entry(0) + OFFSET), FUTEX_OWNER_DIED);
        assert_eq!(
            m.word(entry(1) + OFFSET),
            TID,
            "the walk went past a bad pointer"
        );
        // An unreadable head, or a misaligned futex, ends it too.
        exit_robust_list(0x10, TID, &mut Mem::default());
        let mut m = list(&[TID, TID], 2, 0);
        m.words.insert(entry(0) + 2, TID);
        exit_robust_list(HEAD, TID, &mut m);
        assert_eq!(m.word(entry(1) + 2), TID);
    }

    #[test]
    fn list_op_pending_is_handled_once_and_last() {
        // Pending and on the list: marked once (the tid is gone after the first).
        let mut m = list(&[TID | FUTEX_WAITERS], OFFSET, entry(0));
        exit_robust_list(HEAD, TID, &mut m);
        assert_eq!(m.word(entry(0) + OFFSET), FUTEX_OWNER_DIED | FUTEX_WAITERS);
        assert_eq!(m.woken, [entry(0) + OFFSET]);
        // Pending, not on the list (the thread died while adding it).
        let mut m = list(&[], OFFSET, entry(3));
        m.words.insert(entry(3) + OFFSET, TID);
        exit_robust_list(HEAD, TID, &mut m);
        assert_eq!(m.word(entry(3) + OFFSET), FUTEX_OWNER_DIED);
        // Pending on a futex nobody owns (released, waiter not yet woken): woken,
        // not marked.
        let mut m = list(&[], OFFSET, entry(3));
        m.words.insert(entry(3) + OFFSET, FUTEX_WAITERS);
        exit_robust_list(HEAD, TID, &mut m);
        assert_eq!(m.word(entry(3) + OFFSET), FUTEX_WAITERS);
        assert_eq!(m.woken, [entry(3) + OFFSET]);
    }

    #[test]
    fn pi_futexes_are_marked_but_not_woken() {
        let mut m = list(&[TID | FUTEX_WAITERS], OFFSET, 0);
        m.put64(HEAD, entry(0) | 1);
        exit_robust_list(HEAD, TID, &mut m);
        assert_eq!(m.word(entry(0) + OFFSET), FUTEX_OWNER_DIED | FUTEX_WAITERS);
        assert!(m.woken.is_empty());
    }

    #[test]
    fn a_word_that_keeps_changing_is_given_up() {
        let mut m = list(&[TID, TID], OFFSET, 0);
        m.contended = Some(entry(0) + OFFSET);
        exit_robust_list(HEAD, TID, &mut m);
        assert_eq!(m.word(entry(0) + OFFSET) & FUTEX_TID_MASK, TID);
        assert_eq!(
            m.word(entry(1) + OFFSET),
            FUTEX_OWNER_DIED,
            "the walk stopped"
        );
    }
}
