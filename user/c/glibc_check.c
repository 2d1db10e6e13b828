/* glibc_check: a static glibc program on the same ABI as the Rust programs: malloc
 * (brk heap and mmap'd large blocks), printf with integers and floating point (FP
 * registers), fork + waitpid, copy-on-write of a malloc'd buffer, mmap + madvise,
 * opendir/readdir (getdents64).
 * Prints TEST lines and "glibc_check: N passed, N failed"; exits 0 only if all pass.
 * Build: aarch64-linux-gnu-gcc -static -O2 -o glibc_check glibc_check.c */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

static int passed, failed;

static void report(const char *name, const char *why)
{
    if (why) {
        printf("TEST %s ... FAILED: %s\n", name, why);
        failed++;
    } else {
        printf("TEST %s ... ok\n", name);
        passed++;
    }
    fflush(stdout);
}

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

int main(void)
{
    report("malloc_small_and_large", malloc_small_and_large());
    report("printf_formats", printf_formats());
    report("fork_waitpid", fork_waitpid());
    report("fork_cow", fork_cow());
    report("mmap_madvise", mmap_madvise());
    report("readdir_lists", readdir_lists());
    printf("glibc_check: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
