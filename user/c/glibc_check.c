/* glibc_check: a static glibc program on the same ABI as the Rust programs: malloc
 * (brk heap and mmap'd large blocks), printf with integers and floating point (FP
 * registers), fork + waitpid, copy-on-write of a malloc'd buffer, mmap + madvise,
 * opendir/readdir (getdents64),
 * sleep / usleep / nanosleep / clock_nanosleep (glibc sleeps with clock_nanosleep),
 * access / faccessat (faccessat, and faccessat2 when flags are given),
 * sysconf(_SC_NPROCESSORS_ONLN) (glibc reads /sys/devices/system/cpu/online),
 * sigaction + sigsetjmp/siglongjmp out of a SIGSEGV on a read-only page (what Linux's
 * mm selftests do), signal() + raise(), pipe + fork as Linux's cow test talks to its
 * children, poll on a pipe.
 * Prints TEST lines and "glibc_check: N passed, N failed"; exits 0 only if all pass.
 * Build: aarch64-linux-gnu-gcc -static -O2 -o glibc_check glibc_check.c */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "report.h"

static const char *malloc_small_and_large(void)
{
    char *small = malloc(100);
    size_t big_len = 8 << 20;
    unsigned char *big = malloc(big_len);
    if (!small || !big)
        return "malloc returned NULL";
    strcpy(small, "contkernel");
    memset(big, 0x5a, big_len);
    for (size_t i = 0; i < big_len; i += 4096)
        if (big[i] != 0x5a)
            return "large block lost a write";
    if (strcmp(small, "contkernel") != 0)
        return "small block lost its string";
    free(big);
    free(small);
    return NULL;
}

static const char *printf_formats(void)
{
    char buf[64];
    volatile double x = 2.5;
    snprintf(buf, sizeof buf, "%d %s %.3f %x", -42, "ok", x * 1.5, 0xbeef);
    return strcmp(buf, "-42 ok 3.750 beef") == 0 ? NULL : "snprintf gave something else";
}

static const char *fork_waitpid(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return "fork failed";
    if (pid == 0)
        _exit(42);
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return "waitpid failed";
    return WIFEXITED(status) && WEXITSTATUS(status) == 42 ? NULL : "wrong exit status";
}

static const char *fork_cow(void)
{
    size_t len = 1 << 20;
    unsigned char *p = malloc(len);
    if (!p)
        return "malloc returned NULL";
    memset(p, 0x11, len);
    pid_t pid = fork();
    if (pid < 0)
        return "fork failed";
    if (pid == 0) {
        memset(p, 0x22, len);
        _exit(p[len - 1] == 0x22 ? 0 : 1);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return "child failed";
    for (size_t i = 0; i < len; i += 512)
        if (p[i] != 0x11)
            return "parent sees the child's write";
    free(p);
    return NULL;
}

static const char *mmap_madvise(void)
{
    size_t len = 1 << 20;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return "mmap failed";
    memset(p, 0x33, len);
    if (madvise(p, len / 2, MADV_DONTNEED) != 0)
        return "madvise(DONTNEED) failed";
    if (p[0] != 0 || p[len / 2 - 1] != 0)
        return "dropped half not zero";
    if (p[len / 2] != 0x33)
        return "kept half changed";
    if (madvise(p, len, MADV_HUGEPAGE) != 0)
        return "madvise(HUGEPAGE) failed";
    return munmap(p, len) == 0 ? NULL : "munmap failed";
}

/* opendir/readdir (getdents64) over a sysfs directory and the root: the names a
 * program looks for are there, "." and ".." included. */
static const char *readdir_lists(void)
{
    static const struct { const char *dir, *name; } want[] = {
        {"/sys/kernel/mm/transparent_hugepage", "hugepages-64kB"},
        {"/sys/kernel/mm/transparent_hugepage", "enabled"},
        {"/sys/kernel/mm/transparent_hugepage", "hpage_pmd_size"},
        {"/", "bin"},
        {"/bin", "hello"},
        {"/bin", ".."},
    };
    mount("sysfs", "/sys", "sysfs", 0, NULL); /* a bare Linux; EBUSY or no-op elsewhere */
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        DIR *d = opendir(want[i].dir);
        if (!d)
            return "opendir failed";
        int found = 0, entries = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            entries++;
            found |= strcmp(e->d_name, want[i].name) == 0;
        }
        closedir(d);
        if (!found) {
            static char why[160];
            snprintf(why, sizeof why, "%s not listed in %s (%d entries)", want[i].name,
                     want[i].dir, entries);
            return why;
        }
    }
    return NULL;
}

static long long now_ns(clockid_t clock)
{
    struct timespec t;
    if (clock_gettime(clock, &t) != 0)
        return -1;
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Each sleep must succeed and last at least what it asked for. */
static const char *sleeps(void)
{
    long long t0 = now_ns(CLOCK_MONOTONIC);
    if (sleep(1) != 0)
        return "sleep(1) did not return 0";
    long long t1 = now_ns(CLOCK_MONOTONIC);
    if (t1 - t0 < 1000000000LL)
        return "sleep(1) returned early";
    if (usleep(20000) != 0)
        return "usleep failed";
    long long t2 = now_ns(CLOCK_MONOTONIC);
    if (t2 - t1 < 20000000LL)
        return "usleep(20000) returned early";
    struct timespec d = {0, 5000000};
    if (nanosleep(&d, NULL) != 0)
        return "nanosleep failed";
    long long t3 = now_ns(CLOCK_MONOTONIC);
    if (t3 - t2 < 5000000LL)
        return "nanosleep(5 ms) returned early";
    long long end = now_ns(CLOCK_REALTIME) + 5000000LL;
    struct timespec abs = {end / 1000000000LL, end % 1000000000LL};
    if (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &abs, NULL) != 0)
        return "clock_nanosleep(REALTIME, TIMER_ABSTIME) failed";
    if (now_ns(CLOCK_REALTIME) < end)
        return "clock_nanosleep(TIMER_ABSTIME) returned early";
    struct timespec bad = {0, 1000000000L};
    if (clock_nanosleep(CLOCK_MONOTONIC, 0, &bad, NULL) != EINVAL)
        return "clock_nanosleep with tv_nsec = 10^9 is not EINVAL";
    return NULL;
}

/* access as root: the program itself is readable and executable, a missing file is
 * ENOENT, a bad mode EINVAL; writing to it is EROFS on contkernel, whose root is the
 * read-only initramfs (Linux unpacks it into a writable tmpfs: 0 there). */
static const char *access_checks(void)
{
    const char *me = "/bin/glibc_check";
    struct utsname u;
    int contkernel = uname(&u) == 0 && strstr(u.release, "contkernel") != NULL;
    if (access(me, F_OK) != 0 || access(me, R_OK | X_OK) != 0)
        return "access(self, R_OK | X_OK) failed";
    if (access("/nonexistent", F_OK) != -1 || errno != ENOENT)
        return "access of a missing file is not ENOENT";
    if (access(me, 8) != -1 || errno != EINVAL)
        return "access with mode 8 is not EINVAL";
    int w = access(me, W_OK);
    if (contkernel && (w != -1 || errno != EROFS))
        return "access(self, W_OK) is not EROFS on the read-only root";
    if (!contkernel && w != 0 && errno != EROFS)
        return "access(self, W_OK) failed";
    if (faccessat(AT_FDCWD, "bin/glibc_check", X_OK, AT_EACCESS) != 0)
        return "faccessat(AT_EACCESS) (faccessat2) failed";
    if (faccessat(AT_FDCWD, me, F_OK, 0x1) != -1 || errno != EINVAL)
        return "faccessat with flag 0x1 is not EINVAL";
    return NULL;
}

/* glibc counts the online CPUs from /sys/devices/system/cpu/online (falling back to
 * /proc/stat): the count must be the number of processors /proc/cpuinfo lists. */
static const char *nprocs(void)
{
    if (access("/proc/cpuinfo", F_OK) != 0)
        mount("proc", "/proc", "proc", 0, NULL);
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return "no /proc/cpuinfo";
    char line[256];
    long listed = 0;
    while (fgets(line, sizeof line, f))
        listed += strncmp(line, "processor", 9) == 0;
    fclose(f);
    long onln = sysconf(_SC_NPROCESSORS_ONLN), conf = sysconf(_SC_NPROCESSORS_CONF);
    if (onln != listed) {
        static char why[96];
        snprintf(why, sizeof why, "sysconf(_SC_NPROCESSORS_ONLN) %ld, /proc/cpuinfo lists %ld", onln, listed);
        return why;
    }
    return conf >= onln ? NULL : "_SC_NPROCESSORS_CONF below _SC_NPROCESSORS_ONLN";
}

static sigjmp_buf segv_env;
static volatile sig_atomic_t segv_code;
static void *volatile segv_addr;

static void on_segv(int sig, siginfo_t *info, void *uc)
{
    (void)sig;
    (void)uc;
    segv_code = info->si_code;
    segv_addr = info->si_addr;
    siglongjmp(segv_env, 1);
}

static const char *siglongjmp_out_of_segv(void)
{
    struct sigaction sa = { 0 }, old;
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    if (sigaction(SIGSEGV, &sa, &old))
        return "sigaction";
    char *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return "mmap";
    const char *why = NULL;
    for (int round = 0; round < 3 && !why; round++) {
        if (sigsetjmp(segv_env, 1) == 0) {
            *(volatile char *)(p + 100) = 1;
            why = "the write to a read-only page did not fault";
        } else if (segv_code != SEGV_ACCERR || segv_addr != p + 100) {
            why = "wrong si_code or si_addr";
        }
    }
    /* siglongjmp restored the mask saved by sigsetjmp: SIGSEGV is not blocked. */
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    if (!why && sigismember(&now, SIGSEGV))
        why = "SIGSEGV still blocked after siglongjmp";
    munmap(p, 4096);
    sigaction(SIGSEGV, &old, NULL);
    return why;
}

static volatile sig_atomic_t usr1_seen;

static void on_usr1(int sig)
{
    usr1_seen = sig;
}

static const char *signal_raise(void)
{
    if (signal(SIGUSR1, on_usr1) == SIG_ERR)
        return "signal";
    if (raise(SIGUSR1))
        return "raise";
    signal(SIGUSR1, SIG_DFL);
    return usr1_seen == SIGUSR1 ? NULL : "the handler did not run";
}

static const char *pipe_fork_talk(void)
{
    int to_child[2], to_parent[2];
    if (pipe(to_child) || pipe(to_parent))
        return "pipe";
    pid_t pid = fork();
    if (pid < 0)
        return "fork";
    if (pid == 0) {
        char c;
        close(to_child[1]);
        close(to_parent[0]);
        while (read(to_child[0], &c, 1) == 1) {
            c++;
            if (write(to_parent[1], &c, 1) != 1)
                _exit(1);
        }
        _exit(0);
    }
    close(to_child[0]);
    close(to_parent[1]);
    const char *why = NULL;
    for (char c = 'a'; c < 'z' && !why; c++) {
        char back;
        struct pollfd pfd = { .fd = to_parent[0], .events = POLLIN };
        if (write(to_child[1], &c, 1) != 1)
            why = "write";
        else if (poll(&pfd, 1, 5000) != 1 || !(pfd.revents & POLLIN))
            why = "poll";
        else if (read(to_parent[0], &back, 1) != 1 || back != c + 1)
            why = "the child's answer";
    }
    close(to_child[1]);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
        why = why ? why : "the child did not exit 0";
    close(to_parent[0]);
    return why;
}

int main(void)
{
    report("malloc_small_and_large", malloc_small_and_large());
    report("printf_formats", printf_formats());
    report("fork_waitpid", fork_waitpid());
    report("fork_cow", fork_cow());
    report("mmap_madvise", mmap_madvise());
    report("readdir_lists", readdir_lists());
    report("sleeps", sleeps());
    report("access_checks", access_checks());
    report("nprocs", nprocs());
    report("siglongjmp_out_of_segv", siglongjmp_out_of_segv());
    report("signal_raise", signal_raise());
    report("pipe_fork_talk", pipe_fork_talk());
    printf("glibc_check: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
