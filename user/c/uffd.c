/* uffd: userfaultfd's missing mode, the same here as on Linux. The UFFDIO_API
 * handshake; a handler thread resolving the faults of another thread with
 * UFFDIO_COPY and UFFDIO_ZEROPAGE (messages read after poll); UFFDIO_WAKE without a
 * fill makes the fault come again; closing the descriptor wakes a waiting fault,
 * which then proceeds as an ordinary one; the thread id feature; fork's child is not
 * registered, unless UFFD_FEATURE_EVENT_FORK gives it a context of its own; a private
 * hugetlb mapping's faults filled whole (MISSING_HUGETLBFS), a memfd's into the file
 * (MISSING_SHMEM); SIGKILL ends a fault's wait; smaps's "um"; a copy of a 64 KiB run, EEXIST over it; mremap refuses to move several
 * VMAs when one is registered. Prints TEST lines and "uffd: N passed, N failed".
 * Build: aarch64-linux-gnu-gcc -static -O2 -pthread -o uffd uffd.c */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "report.h"

#define PG 4096UL
#define RUN (16 * PG)

static int open_uffd(uint64_t features)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct uffdio_api api = { .api = UFFD_API, .features = features };
    if (ioctl(fd, UFFDIO_API, &api) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* `pages` pages of anonymous memory at a 64 KiB boundary, registered with `fd`. */
static char *registered(int fd, size_t pages)
{
    char *raw = mmap(NULL, pages * PG + RUN, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    char *p = (char *)(((uintptr_t)raw + RUN - 1) & ~(RUN - 1));
    struct uffdio_register reg = {
        .range = { .start = (uintptr_t)p, .len = pages * PG },
        .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    if (ioctl(fd, UFFDIO_REGISTER, &reg) != 0)
        return NULL;
    uint64_t want = 1ULL << _UFFDIO_WAKE | 1ULL << _UFFDIO_COPY | 1ULL << _UFFDIO_ZEROPAGE;
    if ((reg.ioctls & want) != want)
        return NULL;
    return p;
}

/* The next fault message (waits in poll up to 5 s); 0 if none. */
static int next_msg(int fd, struct uffd_msg *m)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    if (poll(&pfd, 1, 5000) != 1 || !(pfd.revents & POLLIN))
        return 0;
    return read(fd, m, sizeof *m) == sizeof *m && m->event == UFFD_EVENT_PAGEFAULT;
}

static const char *api_handshake(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return "userfaultfd failed";
    struct uffdio_range r = { .start = 0x10000, .len = PG };
    if (ioctl(fd, UFFDIO_WAKE, &r) == 0 || errno != EINVAL)
        return "an ioctl before UFFDIO_API was not EINVAL";
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    if (poll(&pfd, 1, 0) != 1 || pfd.revents != POLLERR)
        return "poll before UFFDIO_API was not POLLERR";
    struct uffdio_api api = { .api = 0x55, .features = 0, .ioctls = 7 };
    if (ioctl(fd, UFFDIO_API, &api) == 0 || errno != EINVAL || api.ioctls != 0)
        return "a wrong API version was not EINVAL with the struct zeroed";
    api = (struct uffdio_api){ .api = UFFD_API, .features = UFFD_FEATURE_THREAD_ID };
    if (ioctl(fd, UFFDIO_API, &api) != 0)
        return "UFFDIO_API failed";
    uint64_t want = UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_EXACT_ADDRESS;
    if ((api.features & want) != want)
        return "THREAD_ID or EXACT_ADDRESS not reported";
    uint64_t ioctls = 1ULL << _UFFDIO_REGISTER | 1ULL << _UFFDIO_UNREGISTER | 1ULL << _UFFDIO_API;
    if ((api.ioctls & ioctls) != ioctls)
        return "ioctls do not name REGISTER, UNREGISTER, API";
    api = (struct uffdio_api){ .api = UFFD_API };
    if (ioctl(fd, UFFDIO_API, &api) == 0 || errno != EINVAL)
        return "a second UFFDIO_API was not EINVAL";
    char buf[32];
    if (read(fd, buf, 16) != -1 || errno != EINVAL)
        return "a read shorter than a message was not EINVAL";
    if (read(fd, buf, 32) != -1 || errno != EAGAIN)
        return "a read with no fault was not EAGAIN";
    close(fd);
    return NULL;
}

struct toucher {
    char *p;
    size_t pages;
    int write;
    unsigned sum;
    pid_t tid;
};

static void *touch(void *arg)
{
    struct toucher *t = arg;
    t->tid = (pid_t)syscall(SYS_gettid);
    for (size_t i = 0; i < t->pages; i++) {
        if (t->write)
            t->p[i * PG + 1] = 7;
        t->sum += (unsigned char)t->p[i * PG];
    }
    return NULL;
}

/* A thread reads 8 registered pages; this one, the handler, fills the even ones
 * with UFFDIO_COPY (page i holds i + 1) and the odd ones with UFFDIO_ZEROPAGE. */
static const char *handler_resolves_faults(void)
{
    int fd = open_uffd(UFFD_FEATURE_THREAD_ID);
    char *p = fd < 0 ? NULL : registered(fd, 8);
    if (!p)
        return "set-up failed";
    static char page[PG];
    struct toucher t = { .p = p, .pages = 8 };
    pthread_t th;
    pthread_create(&th, NULL, touch, &t);
    for (int n = 0; n < 8; n++) {
        struct uffd_msg m;
        if (!next_msg(fd, &m))
            return "no fault message";
        if (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE)
            return "a read fault came as a write";
        uint64_t at = m.arg.pagefault.address;
        if (at & (PG - 1) || at < (uintptr_t)p || at >= (uintptr_t)p + 8 * PG)
            return "the address is not the faulting page";
        size_t i = (at - (uintptr_t)p) / PG;
        if (i % 2 == 0) {
            memset(page, (int)i + 1, PG);
            struct uffdio_copy c = { .dst = at, .src = (uintptr_t)page, .len = PG };
            if (ioctl(fd, UFFDIO_COPY, &c) != 0 || c.copy != (int64_t)PG)
                return "UFFDIO_COPY failed";
        } else {
            struct uffdio_zeropage z = { .range = { .start = at, .len = PG } };
            if (ioctl(fd, UFFDIO_ZEROPAGE, &z) != 0 || z.zeropage != (int64_t)PG)
                return "UFFDIO_ZEROPAGE failed";
        }
        (void)t.tid;
    }
    pthread_join(th, NULL);
    if (t.sum != 1 + 3 + 5 + 7)
        return "the pages do not hold what the handler put there";
    close(fd);
    return NULL;
}

/* A write fault: the WRITE flag and, with UFFD_FEATURE_THREAD_ID, the thread's id;
 * UFFDIO_WAKE without a fill: the same fault comes again; then a copy resolves it. */
static const char *wake_without_fill_faults_again(void)
{
    int fd = open_uffd(UFFD_FEATURE_THREAD_ID);
    char *p = fd < 0 ? NULL : registered(fd, 1);
    if (!p)
        return "set-up failed";
    struct toucher t = { .p = p, .pages = 1, .write = 1 };
    pthread_t th;
    pthread_create(&th, NULL, touch, &t);
    struct uffd_msg m;
    if (!next_msg(fd, &m))
        return "no fault message";
    if (!(m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE))
        return "a write fault came without UFFD_PAGEFAULT_FLAG_WRITE";
    if (m.arg.pagefault.feat.ptid == 0 || (pid_t)m.arg.pagefault.feat.ptid == getpid())
        return "the message does not name the faulting thread";
    struct uffdio_range r = { .start = (uintptr_t)p, .len = PG };
    if (ioctl(fd, UFFDIO_WAKE, &r) != 0)
        return "UFFDIO_WAKE failed";
    if (!next_msg(fd, &m) || m.arg.pagefault.address != (uintptr_t)p)
        return "the fault did not come again after the wake";
    static char page[PG];
    memset(page, 9, PG);
    struct uffdio_copy c = { .dst = (uintptr_t)p, .src = (uintptr_t)page, .len = PG };
    if (ioctl(fd, UFFDIO_COPY, &c) != 0)
        return "UFFDIO_COPY failed";
    pthread_join(th, NULL);
    if (t.sum != 9 || p[1] != 7)
        return "the write did not land on the copied page";
    close(fd);
    return NULL;
}

/* The last close wakes a waiting fault, which then faults in a zero page. */
static const char *close_wakes_waiters(void)
{
    int fd = open_uffd(0);
    char *p = fd < 0 ? NULL : registered(fd, 1);
    if (!p)
        return "set-up failed";
    struct toucher t = { .p = p, .pages = 1 };
    pthread_t th;
    pthread_create(&th, NULL, touch, &t);
    struct uffd_msg m;
    if (!next_msg(fd, &m))
        return "no fault message";
    close(fd);
    pthread_join(th, NULL);
    if (t.sum != 0)
        return "the page after the close is not zero";
    return NULL;
}

/* UFFDIO_COPY of a 64 KiB run; again over it: EEXIST, -EEXIST in `copy`; a range
 * partly outside the registered VMA: ENOENT; DONTWAKE and unknown mode bits. */
static const char *copy_run_and_errors(void)
{
    int fd = open_uffd(0);
    char *p = fd < 0 ? NULL : registered(fd, 32);
    if (!p)
        return "set-up failed";
    static char src[RUN];
    for (size_t i = 0; i < RUN; i++)
        src[i] = (char)(i / PG + 1);
    struct uffdio_copy c = { .dst = (uintptr_t)p, .src = (uintptr_t)src, .len = RUN,
                             .mode = UFFDIO_COPY_MODE_DONTWAKE };
    if (ioctl(fd, UFFDIO_COPY, &c) != 0 || c.copy != (int64_t)RUN)
        return "UFFDIO_COPY of 64 KiB failed";
    for (size_t i = 0; i < 16; i++)
        if (p[i * PG + 5] != (char)(i + 1))
            return "the copied run does not read back";
    c.copy = 0;
    if (ioctl(fd, UFFDIO_COPY, &c) != -1 || errno != EEXIST || c.copy != -EEXIST)
        return "a copy over populated pages was not EEXIST";
    /* The first page populated, the second not: one page copied, then EAGAIN. */
    c = (struct uffdio_copy){ .dst = (uintptr_t)p + 15 * PG, .src = (uintptr_t)src, .len = 2 * PG };
    if (ioctl(fd, UFFDIO_COPY, &c) != -1 || errno != EEXIST)
        return "a copy starting on a populated page was not EEXIST";
    c = (struct uffdio_copy){ .dst = (uintptr_t)p + 17 * PG, .src = (uintptr_t)src, .len = 2 * PG };
    if (ioctl(fd, UFFDIO_COPY, &c) != 0)
        return "a copy of two pages failed";
    c = (struct uffdio_copy){ .dst = (uintptr_t)p + 16 * PG, .src = (uintptr_t)src, .len = 2 * PG };
    if (ioctl(fd, UFFDIO_COPY, &c) != -1 || errno != EAGAIN || c.copy != (int64_t)PG)
        return "a copy stopped after a page was not EAGAIN with one page copied";
    c = (struct uffdio_copy){ .dst = (uintptr_t)p + 31 * PG, .src = (uintptr_t)src, .len = 2 * PG };
    if (ioctl(fd, UFFDIO_COPY, &c) != -1 || errno != ENOENT)
        return "a copy past the registered VMA was not ENOENT";
    c = (struct uffdio_copy){ .dst = (uintptr_t)p + 20 * PG, .src = (uintptr_t)src, .len = PG, .mode = 4 };
    if (ioctl(fd, UFFDIO_COPY, &c) != -1 || errno != EINVAL)
        return "an unknown copy mode was not EINVAL";
    c = (struct uffdio_copy){ .dst = (uintptr_t)p + 20 * PG, .src = 0, .len = PG };
    if (ioctl(fd, UFFDIO_COPY, &c) != -1 || errno != EFAULT || c.copy != -EFAULT)
        return "a copy from an unmapped source was not EFAULT";
    close(fd);
    return NULL;
}

/* Without UFFD_FEATURE_EVENT_FORK the child's memory is not registered: its faults
 * are ordinary ones. */
static const char *fork_child_is_not_registered(void)
{
    int fd = open_uffd(0);
    char *p = fd < 0 ? NULL : registered(fd, 2);
    if (!p)
        return "set-up failed";
    pid_t pid = fork();
    if (pid == 0) {
        p[0] = 3;
        _exit(p[PG] == 0 && p[0] == 3 ? 0 : 1);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return "the child's access did not fault as usual";
    struct uffd_msg m;
    if (read(fd, &m, sizeof m) != -1 || errno != EAGAIN)
        return "the child's fault came to the parent's descriptor";
    close(fd);
    return NULL;
}

struct forker {
    char *p;
    int status;
};

static void *fork_and_wait(void *arg)
{
    struct forker *f = arg;
    pid_t pid = fork();
    if (pid == 0)
        _exit(f->p[0] == 42 && f->p[PG] == 0 ? 0 : 1);
    f->status = -1;
    if (pid > 0)
        waitpid(pid, &f->status, 0);
    return NULL;
}

/* UFFD_FEATURE_EVENT_FORK: a thread's fork waits until the monitor reads the
 * UFFD_EVENT_FORK message, which carries a new descriptor for the child's context;
 * the child's faults come there and the monitor resolves them through it. */
static const char *event_fork_gives_the_child_context(void)
{
    int fd = open_uffd(UFFD_FEATURE_EVENT_FORK);
    char *p = fd < 0 ? NULL : registered(fd, 2);
    if (!p)
        return "set-up failed";
    struct forker f = { .p = p };
    pthread_t th;
    pthread_create(&th, NULL, fork_and_wait, &f);
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    struct uffd_msg m;
    if (poll(&pfd, 1, 5000) != 1 || read(fd, &m, sizeof m) != sizeof m)
        return "no fork message";
    if (m.event != UFFD_EVENT_FORK)
        return "the message is not UFFD_EVENT_FORK";
    int child_fd = (int)m.arg.fork.ufd;
    if (child_fd <= fd || fcntl(child_fd, F_GETFD) != FD_CLOEXEC)
        return "the fork message does not carry a new descriptor (close-on-exec as ours)";
    static char page[PG];
    memset(page, 42, PG);
    for (int n = 0; n < 2; n++) {
        if (!next_msg(child_fd, &m))
            return "no fault message from the child";
        uint64_t at = m.arg.pagefault.address;
        int ok;
        if (at == (uintptr_t)p) {
            struct uffdio_copy c = { .dst = at, .src = (uintptr_t)page, .len = PG };
            ok = ioctl(child_fd, UFFDIO_COPY, &c) == 0;
        } else {
            struct uffdio_zeropage z = { .range = { .start = at, .len = PG } };
            ok = ioctl(child_fd, UFFDIO_ZEROPAGE, &z) == 0;
        }
        if (!ok)
            return "filling the child's page failed";
    }
    pthread_join(th, NULL);
    if (!WIFEXITED(f.status) || WEXITSTATUS(f.status) != 0)
        return "the child did not read what the monitor put there";
    if (read(fd, &m, sizeof m) != -1 || errno != EAGAIN)
        return "the child's faults came to the parent's descriptor";
    close(child_fd);
    close(fd);
    return NULL;
}

/* The 2 MiB pool's nr_hugepages: read (set < 0) or written. */
static long nr_hugepages(long set)
{
    FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", set < 0 ? "r" : "w");
    long n = -1;
    if (!f)
        return -1;
    if (set < 0) {
        if (fscanf(f, "%ld", &n) != 1)
            n = -1;
    } else {
        n = fprintf(f, "%ld\n", set) > 0 ? set : -1;
    }
    return fclose(f) == 0 ? n : -1;
}

/* UFFD_FEATURE_MISSING_HUGETLBFS: a private 2 MiB hugetlb mapping registers (at
 * huge-page boundaries only, without UFFDIO_ZEROPAGE), a fault reports the huge
 * page's address, and UFFDIO_COPY fills the whole page. */
static const char *hugetlb_missing_faults(void)
{
    const size_t huge = 2UL << 20;
    long before = nr_hugepages(-1);
    if (before < 0 || nr_hugepages(before + 1) != before + 1)
        return "no 2 MiB pool page";
    const char *why = NULL;
    int fd = open_uffd(UFFD_FEATURE_MISSING_HUGETLBFS);
    char *p = mmap(NULL, huge, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    static char src[2UL << 20];
    if (fd < 0 || p == MAP_FAILED) {
        why = "set-up failed";
        goto out;
    }
    struct uffdio_register reg = {
        .range = { .start = (uintptr_t)p + PG, .len = huge - PG },
        .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    if (ioctl(fd, UFFDIO_REGISTER, &reg) == 0 || errno != EINVAL) {
        why = "a registration inside a huge page was not EINVAL";
        goto out;
    }
    reg.range.start = (uintptr_t)p;
    reg.range.len = huge;
    if (ioctl(fd, UFFDIO_REGISTER, &reg) != 0) {
        why = "UFFDIO_REGISTER of a hugetlb mapping failed";
        goto out;
    }
    if (!(reg.ioctls & (1ULL << _UFFDIO_COPY)) || (reg.ioctls & (1ULL << _UFFDIO_ZEROPAGE))) {
        why = "ioctls are not the basic set (COPY, no ZEROPAGE)";
        goto out;
    }
    struct toucher t = { .p = p + 5 * PG, .pages = 1 };
    pthread_t th;
    pthread_create(&th, NULL, touch, &t);
    struct uffd_msg m;
    if (!next_msg(fd, &m) || m.arg.pagefault.address != (uintptr_t)p) {
        why = "no fault message for the huge page";
        goto out;
    }
    struct uffdio_zeropage z = { .range = { .start = (uintptr_t)p, .len = huge } };
    if (ioctl(fd, UFFDIO_ZEROPAGE, &z) == 0 || errno != EINVAL) {
        why = "UFFDIO_ZEROPAGE of a huge page was not EINVAL";
        goto out;
    }
    memset(src, 5, sizeof src);
    struct uffdio_copy c = { .dst = (uintptr_t)p, .src = (uintptr_t)src, .len = PG };
    if (ioctl(fd, UFFDIO_COPY, &c) == 0 || errno != EINVAL) {
        why = "a copy of part of a huge page was not EINVAL";
        goto out;
    }
    c.len = huge;
    if (ioctl(fd, UFFDIO_COPY, &c) != 0 || c.copy != (int64_t)huge) {
        why = "UFFDIO_COPY of the huge page failed";
        goto out;
    }
    pthread_join(th, NULL);
    if (t.sum != 5 || p[huge - 1] != 5)
        why = "the huge page does not hold the copy";
out:
    if (p != MAP_FAILED)
        munmap(p, huge);
    if (fd >= 0)
        close(fd);
    nr_hugepages(before);
    return why;
}

/* UFFD_FEATURE_MISSING_SHMEM: a shared mapping of a memfd registers; a fault on a
 * page the file does not have comes to the handler, whose UFFDIO_COPY puts the page
 * in the file: another mapping of it reads the copy. */
static const char *shmem_missing_faults(void)
{
    int fd = open_uffd(UFFD_FEATURE_MISSING_SHMEM);
    int mfd = memfd_create("uffd", MFD_CLOEXEC);
    if (fd < 0 || mfd < 0 || ftruncate(mfd, 2 * PG) != 0)
        return "set-up failed";
    char *a = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    char *b = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (a == MAP_FAILED || b == MAP_FAILED)
        return "mmap failed";
    b[PG] = 4; /* page 1 is the file's: no userfault for it */
    struct uffdio_register reg = {
        .range = { .start = (uintptr_t)a, .len = 2 * PG },
        .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    if (ioctl(fd, UFFDIO_REGISTER, &reg) != 0)
        return "UFFDIO_REGISTER of a memfd mapping failed";
    struct toucher t = { .p = a, .pages = 2 };
    pthread_t th;
    pthread_create(&th, NULL, touch, &t);
    struct uffd_msg m;
    if (!next_msg(fd, &m) || m.arg.pagefault.address != (uintptr_t)a)
        return "no fault message for the file's missing page";
    static char page[PG];
    memset(page, 6, PG);
    struct uffdio_copy c = { .dst = (uintptr_t)a, .src = (uintptr_t)page, .len = PG };
    if (ioctl(fd, UFFDIO_COPY, &c) != 0)
        return "UFFDIO_COPY into the memfd mapping failed";
    pthread_join(th, NULL);
    if (t.sum != 6 + 4)
        return "the pages do not hold the copy and the file's page";
    if (b[0] != 6)
        return "the other mapping does not see the copied page";
    c = (struct uffdio_copy){ .dst = (uintptr_t)a + PG, .src = (uintptr_t)page, .len = PG };
    if (ioctl(fd, UFFDIO_COPY, &c) != -1 || errno != EEXIST)
        return "a copy over the file's page was not EEXIST";
    munmap(a, 2 * PG);
    munmap(b, 2 * PG);
    close(mfd);
    close(fd);
    return NULL;
}

/* A fatal signal ends a fault's wait: a child blocked on its own registered page
 * (nobody reads its messages) dies of SIGKILL. */
static const char *kill_ends_the_wait(void)
{
    int ready[2];
    if (pipe(ready) != 0)
        return "pipe failed";
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open_uffd(0);
        char *p = fd < 0 ? NULL : registered(fd, 1);
        if (!p)
            _exit(2);
        if (write(ready[1], "r", 1) != 1)
            _exit(3);
        _exit(p[0]); /* waits for ever: nobody handles the fault */
    }
    char c;
    if (read(ready[0], &c, 1) != 1)
        return "the child did not get ready";
    usleep(100 * 1000);
    kill(pid, SIGKILL);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        return "the waiting child did not die of SIGKILL";
    close(ready[0]);
    close(ready[1]);
    return NULL;
}

/* /proc/self/smaps names a registered VMA's flag: "um" (VM_UFFD_MISSING), and not
 * once it is unregistered. */
static int smaps_um(void *addr)
{
    char line[512];
    FILE *f = fopen("/proc/self/smaps", "r");
    int in = 0, um = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long start, end;
        if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
            in = start <= (uintptr_t)addr && (uintptr_t)addr < end;
        } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            um = strstr(line, " um") != NULL;
            break;
        }
    }
    fclose(f);
    return um;
}

static const char *smaps_shows_um(void)
{
    int fd = open_uffd(0);
    char *p = fd < 0 ? NULL : registered(fd, 4);
    if (!p)
        return "set-up failed";
    if (smaps_um(p) != 1)
        return "the registered VMA's VmFlags lack um";
    struct uffdio_range r = { .start = (uintptr_t)p, .len = 4 * PG };
    if (ioctl(fd, UFFDIO_UNREGISTER, &r) != 0)
        return "UFFDIO_UNREGISTER failed";
    if (smaps_um(p) != 0)
        return "the unregistered VMA's VmFlags still have um";
    close(fd);
    return NULL;
}

/* mremap_test's "mremap move multiple invalid vmas", the first step: several VMAs,
 * all registered, moved at once: EFAULT and nothing moves; one alone moves. */
static const char *mremap_refuses_several_registered_vmas(void)
{
    int fd = open_uffd(0);
    char *p = fd < 0 ? NULL : registered(fd, 4);
    if (!p)
        return "set-up failed";
    char *to = mmap(NULL, 4 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(to, 4 * PG);
    munmap(p + PG, PG);
    void *r = mremap(p, 4 * PG, 4 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, to);
    if (r != MAP_FAILED || errno != EFAULT)
        return "a move of several VMAs, registered, was not EFAULT";
    if (msync(to, PG, MS_ASYNC) == 0)
        return "something moved";
    if (mremap(p, PG, PG, MREMAP_MAYMOVE | MREMAP_FIXED, to) != to)
        return "a single registered VMA did not move";
    munmap(to, PG);
    munmap(p, 4 * PG);
    close(fd);
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* The hugetlb pools' files and smaps (Linux's init here mounts nothing; EBUSY
     * if done). */
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    mount("proc", "/proc", "proc", 0, NULL);
    report("api_handshake", api_handshake());
    report("handler_resolves_faults", handler_resolves_faults());
    report("wake_without_fill_faults_again", wake_without_fill_faults_again());
    report("close_wakes_waiters", close_wakes_waiters());
    report("copy_run_and_errors", copy_run_and_errors());
    report("fork_child_is_not_registered", fork_child_is_not_registered());
    report("event_fork_gives_the_child_context", event_fork_gives_the_child_context());
    report("hugetlb_missing_faults", hugetlb_missing_faults());
    report("shmem_missing_faults", shmem_missing_faults());
    report("kill_ends_the_wait", kill_ends_the_wait());
    report("smaps_shows_um", smaps_shows_um());
    report("mremap_refuses_several_registered_vmas", mremap_refuses_several_registered_vmas());
    printf("uffd: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
