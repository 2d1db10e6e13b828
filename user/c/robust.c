/* robust: robust futex lists, the same here as on Linux. glibc's robust mutexes: a
 * thread that dies holding one makes the next pthread_mutex_lock return EOWNERDEAD
 * (and pthread_mutex_consistent makes it usable again), a thread asleep on it is
 * woken by the death; then lists registered by hand with set_robust_list, to check
 * the kernel's walk itself: only the futexes the dying thread owns are marked
 * FUTEX_OWNER_DIED, a waiter of one with FUTEX_WAITERS is woken, list_op_pending is
 * handled, a circular list or a bad pointer ends the walk without harm; and
 * get_robust_list reads back what glibc registered.
 * Prints TEST lines and "robust: N passed, N failed"; exits 0 only if all pass.
 * Build: aarch64-linux-gnu-gcc -static -O2 -pthread -o robust robust.c */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "report.h"

static pid_t tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* An absolute CLOCK_REALTIME deadline `ms` from now (what the timed calls take). */
static struct timespec after_ms(long ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

/* Join, but give up after 10 s (a thread stuck in its exit fails the test instead
 * of hanging the program). */
static int join_in_time(pthread_t t)
{
    struct timespec dl = after_ms(10000);
    return pthread_timedjoin_np(t, NULL, &dl);
}

static void robust_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}

/* --- glibc: a thread dies holding a robust mutex --- */

static pthread_mutex_t held;
static volatile int owner_holds;

static void *lock_and_exit(void *arg)
{
    long ms = (long)arg;
    pthread_mutex_lock(&held);
    owner_holds = 1;
    if (ms)
        usleep(ms * 1000);
    return NULL; /* ends the thread with the mutex held */
}

static const char *owner_dies(void)
{
    robust_init(&held);
    pthread_t t;
    if (pthread_create(&t, NULL, lock_and_exit, NULL) != 0)
        return "pthread_create failed";
    if (join_in_time(t) != 0)
        return "the thread did not end";
    struct timespec dl = after_ms(2000);
    int r = pthread_mutex_timedlock(&held, &dl);
    if (r == ETIMEDOUT)
        return "the lock of a dead owner was never released (no OWNER_DIED)";
    if (r != EOWNERDEAD)
        return "pthread_mutex_lock did not return EOWNERDEAD";
    if (pthread_mutex_consistent(&held) != 0)
        return "pthread_mutex_consistent failed";
    if (pthread_mutex_unlock(&held) != 0)
        return "unlock after consistent failed";
    if (pthread_mutex_lock(&held) != 0)
        return "the mutex is not usable again after consistent";
    pthread_mutex_unlock(&held);
    pthread_mutex_destroy(&held);
    return NULL;
}

static volatile int waiter_result;

static void *wait_for_held(void *arg)
{
    (void)arg;
    struct timespec dl = after_ms(5000);
    int r = pthread_mutex_timedlock(&held, &dl);
    waiter_result = r;
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(&held);
        pthread_mutex_unlock(&held);
    }
    return NULL;
}

static const char *waiter_woken_by_death(void)
{
    robust_init(&held);
    waiter_result = -1;
    owner_holds = 0;
    pthread_t owner, waiter;
    /* The owner holds the mutex for 200 ms; the waiter sleeps on it meanwhile. */
    if (pthread_create(&owner, NULL, lock_and_exit, (void *)200L) != 0)
        return "pthread_create failed";
    while (!owner_holds)
        usleep(1000);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (pthread_create(&waiter, NULL, wait_for_held, NULL) != 0)
        return "pthread_create failed";
    if (join_in_time(owner) != 0 || join_in_time(waiter) != 0)
        return "a thread did not end";
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    pthread_mutex_destroy(&held);
    if (waiter_result == ETIMEDOUT)
        return "the sleeping waiter was not woken by the owner's death";
    if (waiter_result != EOWNERDEAD)
        return "the waiter did not get EOWNERDEAD";
    return ms < 4000 ? NULL : "the waiter was woken late";
}

/* --- the kernel's walk, on lists made by hand ---
 * A node as glibc lays it out: the futex word first, the list pointer after it, so
 * the futex offset is negative. */

struct node {
    uint32_t word;
    uint32_t pad;
    uintptr_t next;
};

struct robust_head {
    uintptr_t next;
    long futex_offset;
    uintptr_t pending;
};

#define OFFSET ((long)offsetof(struct node, word) - (long)offsetof(struct node, next))

static struct robust_head head;
static struct node nodes[5];
static volatile int dying_tid, waiter_ready;
static volatile long wait_result;

static uintptr_t link_of(struct node *n)
{
    return (uintptr_t)&n->next;
}

/* Waits (shared, as glibc's robust mutexes do) on nodes[1], which the dying thread
 * owns with FUTEX_WAITERS set. */
static void *futex_waiter(void *arg)
{
    (void)arg;
    while (!dying_tid)
        usleep(1000);
    uint32_t expect = (uint32_t)dying_tid | FUTEX_WAITERS;
    __atomic_store_n(&nodes[1].word, expect, __ATOMIC_SEQ_CST);
    waiter_ready = 1;
    struct timespec rel = {5, 0};
    wait_result = syscall(SYS_futex, &nodes[1].word, FUTEX_WAIT, expect, &rel, NULL, 0);
    if (wait_result < 0)
        wait_result = -errno;
    return NULL;
}

/* Registers `head` (set up by the test) as its robust list, after filling in its
 * tid as the owner where the test asked for it (OWNED), and exits with exit(2). */
#define OWNED 0x12345u

static void *die_with_list(void *arg)
{
    int wait_for_waiter = arg != NULL;
    pid_t me = tid();
    for (int i = 0; i < 5; i++)
        if ((nodes[i].word & FUTEX_TID_MASK) == OWNED)
            nodes[i].word = (nodes[i].word & ~FUTEX_TID_MASK) | (uint32_t)me;
    if (syscall(SYS_set_robust_list, &head, sizeof head) != 0)
        return (void *)1;
    dying_tid = me;
    if (wait_for_waiter) {
        while (!waiter_ready)
            usleep(1000);
        usleep(100000); /* the waiter is asleep in FUTEX_WAIT by now */
    }
    syscall(SYS_exit, 0);
    return NULL;
}

static void reset(void)
{
    memset(nodes, 0, sizeof nodes);
    head.next = (uintptr_t)&head;
    head.futex_offset = OFFSET;
    head.pending = 0;
    dying_tid = waiter_ready = 0;
}

static const char *walk_marks_what_the_thread_owns(void)
{
    reset();
    /* head -> 0 -> 1 -> 2 -> 3 -> head; 4 is list_op_pending, not on the list. */
    head.next = link_of(&nodes[0]);
    for (int i = 0; i < 3; i++)
        nodes[i].next = link_of(&nodes[i + 1]);
    nodes[3].next = (uintptr_t)&head;
    head.pending = link_of(&nodes[4]);
    nodes[0].word = OWNED;
    nodes[1].word = OWNED | FUTEX_WAITERS; /* the waiter sets it again with the tid */
    nodes[2].word = 1; /* another thread's (tid 1: init) */
    nodes[3].word = 0;
    nodes[4].word = OWNED;
    pthread_t d, w;
    if (pthread_create(&w, NULL, futex_waiter, NULL) != 0 ||
        pthread_create(&d, NULL, die_with_list, (void *)1) != 0)
        return "pthread_create failed";
    if (join_in_time(d) != 0 || join_in_time(w) != 0)
        return "a thread did not end";
    if (nodes[0].word != FUTEX_OWNER_DIED)
        return "an owned futex was not marked FUTEX_OWNER_DIED";
    if (nodes[1].word != (FUTEX_OWNER_DIED | FUTEX_WAITERS))
        return "an owned futex with waiters lost FUTEX_WAITERS or was not marked";
    if (nodes[2].word != 1 || nodes[3].word != 0)
        return "a futex the thread did not own changed";
    if (nodes[4].word != FUTEX_OWNER_DIED)
        return "list_op_pending's futex was not marked";
    if (wait_result == -ETIMEDOUT)
        return "the waiter of a futex with FUTEX_WAITERS was not woken";
    return wait_result == 0 ? NULL : "the waiter's FUTEX_WAIT failed";
}

static const char *walk_is_bounded(void)
{
    /* A circular list that never comes back to the head: 0 -> 1 -> 0 ... */
    reset();
    head.next = link_of(&nodes[0]);
    nodes[0].next = link_of(&nodes[1]);
    nodes[1].next = link_of(&nodes[0]);
    nodes[0].word = nodes[1].word = OWNED;
    pthread_t d;
    if (pthread_create(&d, NULL, die_with_list, NULL) != 0)
        return "pthread_create failed";
    if (join_in_time(d) != 0)
        return "a thread with a circular robust list did not end";
    if (nodes[0].word != FUTEX_OWNER_DIED || nodes[1].word != FUTEX_OWNER_DIED)
        return "the futexes of a circular list were not marked";
    return NULL;
}

static const char *walk_stops_at_a_bad_pointer(void)
{
    /* head -> 0 -> (an address nothing maps): 0 is marked, the walk ends, and the
     * pending entry, after the list, is not reached either (as Linux). */
    reset();
    head.next = link_of(&nodes[0]);
    nodes[0].next = 0x10;
    head.pending = link_of(&nodes[1]);
    nodes[0].word = nodes[1].word = OWNED;
    pthread_t d;
    if (pthread_create(&d, NULL, die_with_list, NULL) != 0)
        return "pthread_create failed";
    if (join_in_time(d) != 0)
        return "a thread with a bad robust list did not end";
    if (nodes[0].word != FUTEX_OWNER_DIED)
        return "the entry before the bad pointer was not marked";
    if (nodes[1].word == FUTEX_OWNER_DIED)
        return "the walk went on after a bad pointer";
    /* A head in kernel memory: accepted (it is not read until the exit), harmless. */
    reset();
    if (syscall(SYS_set_robust_list, (void *)0xffff000040000000UL, sizeof head) != 0)
        return "set_robust_list refused a head it does not read";
    struct robust_head *mine = NULL;
    size_t len = 0;
    if (syscall(SYS_get_robust_list, 0, &mine, &len) != 0 ||
        mine != (void *)0xffff000040000000UL || len != sizeof head)
        return "get_robust_list did not read back the head";
    return NULL;
}

/* --- get_robust_list: glibc registered one list per thread --- */

static volatile int peek_stop;
static volatile pid_t peek_tid;

static void *idle(void *arg)
{
    (void)arg;
    peek_tid = tid();
    while (!peek_stop)
        usleep(1000);
    return NULL;
}

static const char *glibc_registers_a_list_per_thread(void)
{
    void *mine = NULL, *other = NULL;
    size_t len = 0;
    if (syscall(SYS_get_robust_list, 0, &mine, &len) != 0 || len != sizeof head)
        return "get_robust_list(0) failed";
    if (mine == NULL)
        return "glibc registered no robust list for the main thread";
    pthread_t t;
    peek_tid = 0;
    peek_stop = 0;
    if (pthread_create(&t, NULL, idle, NULL) != 0)
        return "pthread_create failed";
    while (!peek_tid)
        usleep(1000);
    long r = syscall(SYS_get_robust_list, peek_tid, &other, &len);
    peek_stop = 1;
    join_in_time(t);
    if (r != 0)
        return "get_robust_list of another thread failed";
    return other != NULL && other != mine ? NULL : "threads do not have their own lists";
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    report("glibc_registers_a_list_per_thread", glibc_registers_a_list_per_thread());
    report("owner_dies", owner_dies());
    report("waiter_woken_by_death", waiter_woken_by_death());
    report("walk_marks_what_the_thread_owns", walk_marks_what_the_thread_owns());
    report("walk_is_bounded", walk_is_bounded());
    report("walk_stops_at_a_bad_pointer", walk_stops_at_a_bad_pointer());
    printf("robust: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
