/* pthreads: an ordinary glibc pthread program, unchanged between this kernel and
 * Linux: create/join with return values, a mutex-protected counter from 4 threads,
 * a condition variable queue, thread-local storage, thread ids, detached threads,
 * a timed wait that times out, a process-directed signal taken by the one thread
 * that does not block it, tgkill to one thread, a process-directed signal every
 * thread blocks (pending for the process until one unblocks it), fork from a
 * thread (the child has one thread), exit() from a thread while others sleep (the
 * whole process ends with its status), a fatal signal in one thread (the process dies of it), exec from
 * a process with threads, and exec from a thread that is not the leader (it takes
 * the process's pid).
 * Prints TEST lines and "pthreads: N passed, N failed"; exits 0 only if all pass.
 * Build: aarch64-linux-gnu-gcc -static -O2 -pthread -o pthreads pthreads.c */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "report.h"

static pid_t tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* --- create and join --- */

static void *square(void *arg)
{
    long v = (long)arg;
    return (void *)(v * v);
}

static const char *create_join(void)
{
    pthread_t t[8];
    for (long i = 0; i < 8; i++)
        if (pthread_create(&t[i], NULL, square, (void *)i) != 0)
            return "pthread_create failed";
    for (long i = 0; i < 8; i++) {
        void *r;
        if (pthread_join(t[i], &r) != 0)
            return "pthread_join failed";
        if ((long)r != i * i)
            return "a thread's return value was lost";
    }
    return NULL;
}

/* --- a mutex-protected counter --- */

static pthread_mutex_t counter_lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
#define ROUNDS 20000

static void *count_up(void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        pthread_mutex_lock(&counter_lock);
        counter++;
        pthread_mutex_unlock(&counter_lock);
        if (i % 1000 == 0)
            sched_yield();
    }
    return NULL;
}

static const char *mutex_counter(void)
{
    pthread_t t[4];
    counter = 0;
    for (int i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, count_up, NULL) != 0)
            return "pthread_create failed";
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    return counter == 4L * ROUNDS ? NULL : "the counter lost increments";
}

/* --- a condition-variable queue: one producer, three consumers --- */

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_nonempty = PTHREAD_COND_INITIALIZER;
static int queue[16], q_head, q_len, q_done;
static long q_sum;

static void *consume(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&q_lock);
        while (q_len == 0 && !q_done)
            pthread_cond_wait(&q_nonempty, &q_lock);
        if (q_len == 0) {
            pthread_mutex_unlock(&q_lock);
            return NULL;
        }
        int v = queue[q_head];
        q_head = (q_head + 1) % 16;
        q_len--;
        q_sum += v;
        pthread_cond_broadcast(&q_nonempty);
        pthread_mutex_unlock(&q_lock);
    }
}

static const char *condvar_queue(void)
{
    pthread_t t[3];
    q_head = q_len = q_done = 0;
    q_sum = 0;
    for (int i = 0; i < 3; i++)
        if (pthread_create(&t[i], NULL, consume, NULL) != 0)
            return "pthread_create failed";
    for (int v = 1; v <= 2000; v++) {
        pthread_mutex_lock(&q_lock);
        while (q_len == 16)
            pthread_cond_wait(&q_nonempty, &q_lock);
        queue[(q_head + q_len) % 16] = v;
        q_len++;
        pthread_cond_broadcast(&q_nonempty);
        pthread_mutex_unlock(&q_lock);
    }
    pthread_mutex_lock(&q_lock);
    q_done = 1;
    pthread_cond_broadcast(&q_nonempty);
    pthread_mutex_unlock(&q_lock);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    return q_sum == 2000L * 2001 / 2 ? NULL : "items were lost or taken twice";
}

/* --- thread-local storage and thread ids --- */

static __thread long tls_value = 42;
static pid_t seen_tid[4], seen_pid[4];

static void *tls_worker(void *arg)
{
    long i = (long)arg;
    if (tls_value != 42)
        return (void *)1; /* the initial image was not copied */
    tls_value = 1000 + i;
    seen_tid[i] = tid();
    seen_pid[i] = getpid();
    for (int k = 0; k < 100; k++)
        sched_yield();
    return (void *)(tls_value == 1000 + i ? 0L : 2L);
}

static const char *tls_and_ids(void)
{
    pthread_t t[4];
    tls_value = 7;
    for (long i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, tls_worker, (void *)i) != 0)
            return "pthread_create failed";
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        if (r == (void *)1)
            return "a new thread's TLS did not start from the initial image";
        if (r != NULL)
            return "another thread changed this thread's TLS";
    }
    if (tls_value != 7)
        return "the main thread's TLS changed";
    for (int i = 0; i < 4; i++) {
        if (seen_pid[i] != getpid())
            return "getpid differs in a thread";
        if (seen_tid[i] == getpid())
            return "a thread has the process's id as its tid";
        for (int j = 0; j < i; j++)
            if (seen_tid[i] == seen_tid[j])
                return "two threads share a tid";
    }
    return tid() == getpid() ? NULL : "the main thread's tid is not the pid";
}

/* --- detached threads --- */

static volatile int detached_ran;

static void *detached(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&detached_ran, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static const char *detached_threads(void)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    detached_ran = 0;
    for (int i = 0; i < 16; i++) {
        pthread_t t;
        if (pthread_create(&t, &a, detached, NULL) != 0)
            return "pthread_create failed";
    }
    for (int i = 0; i < 2000 && __atomic_load_n(&detached_ran, __ATOMIC_SEQ_CST) < 16; i++)
        usleep(1000);
    return detached_ran == 16 ? NULL : "a detached thread did not run";
}

/* --- a timed wait that times out, and one that is signalled in time --- */

static const char *timed_wait(void)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    struct timespec t0, t1, dl;
    clock_gettime(CLOCK_REALTIME, &t0);
    dl = t0;
    dl.tv_nsec += 50 * 1000 * 1000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&m);
    int r = pthread_cond_timedwait(&c, &m, &dl);
    pthread_mutex_unlock(&m);
    clock_gettime(CLOCK_REALTIME, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    if (r != ETIMEDOUT)
        return "pthread_cond_timedwait did not time out";
    if (ms < 45)
        return "the timed wait returned early";
    return NULL;
}

/* --- a process-directed signal goes to the thread that does not block it --- */

static volatile pid_t handled_by;
static volatile int worker_ready, worker_stop;
static pid_t worker_tid;

static void on_usr1(int sig)
{
    (void)sig;
    handled_by = tid();
}

static void *unblocked_worker(void *arg)
{
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    worker_tid = tid();
    __atomic_store_n(&worker_ready, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&worker_stop, __ATOMIC_SEQ_CST))
        usleep(1000);
    return NULL;
}

static const char *process_signal(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    signal(SIGUSR1, on_usr1);
    handled_by = 0;
    worker_ready = worker_stop = 0;
    pthread_t t;
    if (pthread_create(&t, NULL, unblocked_worker, NULL) != 0)
        return "pthread_create failed";
    while (!__atomic_load_n(&worker_ready, __ATOMIC_SEQ_CST))
        usleep(1000);
    kill(getpid(), SIGUSR1);
    for (int i = 0; i < 2000 && handled_by == 0; i++)
        usleep(1000);
    const char *why = NULL;
    if (handled_by == 0)
        why = "no thread handled the signal";
    else if (handled_by != worker_tid)
        why = "a thread that blocks the signal handled it";
    /* tgkill to the worker alone. */
    handled_by = 0;
    if (!why && syscall(SYS_tgkill, getpid(), worker_tid, SIGUSR1) != 0)
        why = "tgkill failed";
    for (int i = 0; !why && i < 2000 && handled_by == 0; i++)
        usleep(1000);
    if (!why && handled_by != worker_tid)
        why = "tgkill's signal was not handled by its thread";
    if (!why && syscall(SYS_tgkill, getpid() + 100000, worker_tid, SIGUSR1) != -1)
        why = "tgkill with the wrong process succeeded";
    __atomic_store_n(&worker_stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(t, NULL);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    signal(SIGUSR1, SIG_DFL);
    return why;
}

static volatile int nap_stop;

static void *napper(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&nap_stop, __ATOMIC_SEQ_CST))
        usleep(1000);
    return NULL;
}

/* --- a signal sent to the process while every thread blocks it stays pending for
 *     the process: every thread's sigpending shows it, and the first thread that
 *     unblocks it takes it --- */

static volatile pid_t usr2_by;
static volatile int taker_go, taker_saw_pending;
static pid_t taker_tid;

static void on_usr2(int sig)
{
    (void)sig;
    usr2_by = tid();
}

static int usr2_pending(void)
{
    sigset_t p;
    sigpending(&p);
    return sigismember(&p, SIGUSR2);
}

static void *late_taker(void *arg)
{
    (void)arg;
    taker_tid = tid();
    while (!__atomic_load_n(&taker_go, __ATOMIC_SEQ_CST))
        usleep(1000);
    taker_saw_pending = usr2_pending();
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL); /* the pending one is taken here */
    return NULL;
}

static const char *shared_pending(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    signal(SIGUSR2, on_usr2);
    usr2_by = 0;
    taker_go = taker_saw_pending = 0;
    pthread_t t, other;
    nap_stop = 0;
    if (pthread_create(&t, NULL, late_taker, NULL) != 0 ||
        pthread_create(&other, NULL, napper, NULL) != 0)
        return "pthread_create failed";
    kill(getpid(), SIGUSR2);
    usleep(20000);
    const char *why = NULL;
    if (usr2_by != 0)
        why = "a signal every thread blocks was delivered";
    else if (!usr2_pending())
        why = "sigpending does not show the process's pending signal";
    __atomic_store_n(&taker_go, 1, __ATOMIC_SEQ_CST);
    pthread_join(t, NULL);
    __atomic_store_n(&nap_stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(other, NULL);
    if (!why && !taker_saw_pending)
        why = "another thread's sigpending does not show the process's pending signal";
    else if (!why && usr2_by == 0)
        why = "the thread that unblocked the pending signal did not take it";
    else if (!why && usr2_by != taker_tid)
        why = "the pending signal went to a thread other than the one that unblocked it";
    else if (!why && usr2_pending())
        why = "the signal is still pending after a thread took it";
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    signal(SIGUSR2, SIG_DFL);
    return why;
}

/* --- fork from a thread: the child runs with that one thread --- */

static void *forker(void *arg)
{
    (void)arg;
    pid_t c = fork();
    if (c == 0) {
        /* Only this thread exists in the child; its pid is new, its tid equals it. */
        _exit(tid() == getpid() ? 11 : 12);
    }
    int st = 0;
    if (c < 0 || waitpid(c, &st, 0) != c)
        return (void *)1;
    return (void *)(long)(WIFEXITED(st) ? WEXITSTATUS(st) : 99);
}

static void *sleeper(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static const char *fork_from_thread(void)
{
    pthread_t s, t;
    nap_stop = 0;
    pthread_create(&s, NULL, napper, NULL);
    if (pthread_create(&t, NULL, forker, NULL) != 0)
        return "pthread_create failed";
    void *r;
    pthread_join(t, &r);
    __atomic_store_n(&nap_stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(s, NULL);
    if (r == (void *)1)
        return "fork or waitpid failed in a thread";
    return (long)r == 11 ? NULL : "the forked child is not a one-thread process";
}

/* --- exit() from a thread ends every thread; a fatal signal in one thread ends
 *     the process --- */

static void *exit_seven(void *arg)
{
    (void)arg;
    usleep(20000);
    exit(7);
}

static void *crash(void *arg)
{
    (void)arg;
    usleep(20000);
    raise(SIGKILL);
    return NULL;
}

static int run_child(void *(*fn)(void *))
{
    pid_t c = fork();
    if (c == 0) {
        pthread_t t[4];
        for (int i = 0; i < 3; i++)
            pthread_create(&t[i], NULL, sleeper, NULL);
        pthread_create(&t[3], NULL, fn, NULL);
        for (;;)
            pause();
    }
    int st = 0;
    if (c < 0 || waitpid(c, &st, 0) != c)
        return -1;
    return st;
}

static const char *exit_from_thread(void)
{
    int st = run_child(exit_seven);
    if (st < 0)
        return "fork or waitpid failed";
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 7)
        return "the process did not end with the thread's exit status";
    st = run_child(crash);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
        return "a thread's fatal signal did not end the process with it";
    return NULL;
}

/* --- exec from a process with threads --- */

static const char *exec_with_threads(void)
{
    pid_t c = fork();
    if (c == 0) {
        pthread_t t[3];
        for (int i = 0; i < 3; i++)
            pthread_create(&t[i], NULL, sleeper, NULL);
        char *argv[] = {"pthreads", "--exit-code", NULL};
        execv("/proc/self/exe", argv);
        execv("/bin/pthreads", argv);
        _exit(99);
    }
    int st = 0;
    if (c < 0 || waitpid(c, &st, 0) != c)
        return "fork or waitpid failed";
    if (!WIFEXITED(st))
        return "the exec'd program did not exit";
    if (WEXITSTATUS(st) == 99)
        return "execv failed";
    return WEXITSTATUS(st) == 23 ? NULL : "the exec'd program did not run";
}

/* --- exec from a thread that is not the leader: it takes the process's pid --- */

static void *exec_ids(void *arg)
{
    if (arg)
        usleep(50000); /* the leader has called pthread_exit by now */
    char pid[16], ppid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(ppid, sizeof ppid, "%d", (int)getppid());
    char *argv[] = {"pthreads", "--ids", pid, ppid, NULL};
    execv("/proc/self/exe", argv);
    execv("/bin/pthreads", argv);
    _exit(99);
}

static const char *exec_from_thread_once(int leader_exits)
{
    pid_t c = fork();
    if (c == 0) {
        pthread_t t[3];
        for (int i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, sleeper, NULL);
        pthread_create(&t[2], NULL, exec_ids, leader_exits ? (void *)1 : NULL);
        if (leader_exits)
            pthread_exit(NULL);
        for (;;)
            pause();
    }
    int st = 0;
    if (c < 0 || waitpid(c, &st, 0) != c)
        return "fork or waitpid (for the same pid) failed";
    if (!WIFEXITED(st))
        return "the exec'd program did not exit";
    switch (WEXITSTATUS(st)) {
    case 24:
        return NULL;
    case 99:
        return "execv from a thread failed";
    case 25:
        return "after exec from a thread, getpid, gettid or getppid changed";
    default:
        return "the exec'd program did not run";
    }
}

/* With the leader asleep, and with the leader gone already (pthread_exit). */
static const char *exec_from_thread(void)
{
    const char *why = exec_from_thread_once(0);
    return why ? why : exec_from_thread_once(1);
}

/* The program a thread exec'd: its pid and tid are the old process's pid, its
 * parent the same. */
static int check_ids(const char *pid, const char *ppid)
{
    pid_t want = (pid_t)atoi(pid);
    printf("pthreads: after exec from a thread: getpid %d gettid %d getppid %d (pid was %d, "
           "parent %s)\n",
           (int)getpid(), (int)tid(), (int)getppid(), (int)want, ppid);
    return getpid() == want && tid() == want && getppid() == (pid_t)atoi(ppid) ? 24 : 25;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--exit-code") == 0)
        return 23;
    if (argc > 3 && strcmp(argv[1], "--ids") == 0)
        return check_ids(argv[2], argv[3]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    report("create_join", create_join());
    report("mutex_counter", mutex_counter());
    report("condvar_queue", condvar_queue());
    report("tls_and_ids", tls_and_ids());
    report("detached_threads", detached_threads());
    report("timed_wait", timed_wait());
    report("process_signal", process_signal());
    report("shared_pending", shared_pending());
    report("fork_from_thread", fork_from_thread());
    report("exit_from_thread", exit_from_thread());
    report("exec_with_threads", exec_with_threads());
    report("exec_from_thread", exec_from_thread());
    printf("pthreads: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
