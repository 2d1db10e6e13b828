/* contpte_threads: threads of one process on the same 64 KiB blocks while the
 * blocks change shape under them. Four writers own interleaved words of every page
 * of 16 blocks (64 KiB folios, mapped with the Contiguous bit where the kernel
 * folds them) and check, after every round, that each of their words holds what they
 * wrote; meanwhile one thread mprotects one page of each block to RWX and back
 * (the block unfolds and refolds while writers write that very page), one marks
 * whole blocks lazyfree and pages them out (a write after MADV_FREE must survive:
 * a lost dirty bit shows as a zeroed word), and one forks children that read the
 * blocks and write every word (their copies must never reach the parent).
 *
 * A word may read 0 only if a MADV_FREE of its block overlapped or followed the
 * write (per-block counters tell): a write after MADV_FREE returned must survive
 * the MADV_PAGEOUT that follows. Any other value is a lost write, a leak from a
 * child or a torn view. Runs unchanged on Linux.
 * Prints TEST lines and "contpte_threads: N passed, N failed".
 * Build: aarch64-linux-gnu-gcc -static -O2 -pthread -o contpte_threads contpte_threads.c */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL
#define BLOCK (64 * 1024UL)
#define BLOCKS 16
#define REGION (BLOCKS * BLOCK)
#define WRITERS 4
#define SLOTS_PER_PAGE 4 /* per writer */
#define ROUNDS 150
#define PROTECT_PAGE 15 /* the last page: its restore refolds the block */
#define MIN_LAZY 16
#define MIN_FORKS 4
#define MAX_ROUNDS 1200
#define CHILD_MARK 0xdeadbeefUL

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

static volatile uint64_t *region;
/* Per block: MADV_FREE calls begun and returned. A word may read 0 only if a call
 * on its block was running when it was written, or began after. */
static volatile unsigned long free_begun[BLOCKS], free_done[BLOCKS];
static volatile int writers_done;
static int errors_protect, errors_lazy, errors_fork;
static long n_protect, n_lazy, n_fork, n_rounds[WRITERS];
static char failure[WRITERS][256];

static const char *policy_file = "/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled";
static char old_policy[64];

/* The 64 KiB policy as the file shows it ("always [inherit] madvise never"). */
static void set_policy(const char *want)
{
    int fd = open(policy_file, O_RDWR);
    if (fd < 0)
        return;
    if (!old_policy[0]) {
        char buf[128] = {0};
        if (read(fd, buf, sizeof buf - 1) > 0) {
            char *l = strchr(buf, '['), *r = l ? strchr(l, ']') : NULL;
            if (l && r && r - l - 1 < (long)sizeof old_policy) {
                memcpy(old_policy, l + 1, r - l - 1);
                old_policy[r - l - 1] = 0;
            }
        }
        lseek(fd, 0, SEEK_SET);
    }
    if (write(fd, want, strlen(want)) < 0)
        perror("policy");
    close(fd);
}

static uint64_t value(int writer, int round)
{
    return ((uint64_t)(round + 1) << 8) | (uint64_t)(writer + 1);
}

static volatile uint64_t *slot(int block, int page, int writer, int j)
{
    return region + (block * BLOCK + page * PAGE) / 8 + writer + WRITERS * j;
}

static void *writer(void *arg)
{
    int w = (int)(long)arg;
    /* At least ROUNDS rounds, and on until the others have done their share. */
    for (int round = 0; round < MAX_ROUNDS; round++) {
        if (round >= ROUNDS && __atomic_load_n(&n_lazy, __ATOMIC_SEQ_CST) >= MIN_LAZY &&
            __atomic_load_n(&n_fork, __ATOMIC_SEQ_CST) >= MIN_FORKS)
            break;
        unsigned long begun[BLOCKS], done_[BLOCKS];
        for (int b = 0; b < BLOCKS; b++) {
            begun[b] = __atomic_load_n(&free_begun[b], __ATOMIC_SEQ_CST);
            done_[b] = __atomic_load_n(&free_done[b], __ATOMIC_SEQ_CST);
        }
        uint64_t v = value(w, round);
        for (int b = 0; b < BLOCKS; b++)
            for (int p = 0; p < 16; p++)
                for (int j = 0; j < SLOTS_PER_PAGE; j++)
                    *slot(b, p, w, j) = v;
        for (int b = 0; b < BLOCKS; b++)
            for (int p = 0; p < 16; p++)
                for (int j = 0; j < SLOTS_PER_PAGE; j++) {
                    uint64_t got = *slot(b, p, w, j);
                    if (got == v)
                        continue;
                    unsigned long now = __atomic_load_n(&free_begun[b], __ATOMIC_SEQ_CST);
                    if (got == 0 && (begun[b] != done_[b] || now != begun[b]))
                        continue; /* discarded by a MADV_FREE it raced: allowed */
                    snprintf(failure[w], sizeof failure[w],
                             "writer %d round %d block %d page %d: read %#llx, wrote %#llx "
                             "(MADV_FREE calls on the block: %lu begun, %lu done before the "
                             "write, %lu begun now)",
                             w, round, b, p, (unsigned long long)got, (unsigned long long)v,
                             begun[b], done_[b], now);
                    return NULL;
                }
        n_rounds[w] = round + 1;
        if (round % 16 == 0)
            sched_yield();
    }
    return NULL;
}

static int done(void)
{
    return __atomic_load_n(&writers_done, __ATOMIC_SEQ_CST);
}

static void *protector(void *arg)
{
    (void)arg;
    while (!done())
        for (int b = 0; b < BLOCKS && !done(); b++) {
            void *page = (char *)region + b * BLOCK + PROTECT_PAGE * PAGE;
            if (mprotect(page, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC) ||
                mprotect(page, PAGE, PROT_READ | PROT_WRITE))
                errors_protect++;
            n_protect++;
        }
    return NULL;
}

static void *lazyfree(void *arg)
{
    (void)arg;
    while (!done())
        for (int b = 0; b < BLOCKS && !done(); b += 3) {
            void *blk = (char *)region + b * BLOCK;
            __atomic_add_fetch(&free_begun[b], 1, __ATOMIC_SEQ_CST);
            if (madvise(blk, BLOCK, MADV_FREE))
                errors_lazy++;
            __atomic_add_fetch(&free_done[b], 1, __ATOMIC_SEQ_CST);
            /* EINVAL on kernels without MADV_PAGEOUT: then reclaim is the judge. */
            if (madvise(blk, BLOCK, MADV_PAGEOUT) && errno != EINVAL)
                errors_lazy++;
            __atomic_add_fetch(&n_lazy, 1, __ATOMIC_SEQ_CST);
            sched_yield();
        }
    return NULL;
}

static void *forker(void *arg)
{
    (void)arg;
    while (!done()) {
        pid_t c = fork();
        if (c == 0) {
            /* Every word is a writer's value or 0; then overwrite them all. */
            for (unsigned long i = 0; i < REGION / 8; i++) {
                uint64_t v = region[i];
                if (v != 0 && (v & 0xff) > WRITERS && i % (PAGE / 8) < WRITERS * SLOTS_PER_PAGE)
                    _exit(3);
                region[i] = CHILD_MARK;
            }
            _exit(0);
        }
        int st = 0;
        if (c < 0 || waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            errors_fork++;
        __atomic_add_fetch(&n_fork, 1, __ATOMIC_SEQ_CST);
        usleep(1000);
    }
    return NULL;
}

/* This kernel's contiguous-layer counters (absent on Linux: then nothing is shown). */
static void contpte_stats(const char *when)
{
    char buf[1024] = {0};
    int fd = open("/sys/kernel/mm/contpte/stats", O_RDONLY);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    printf("contpte_threads: %s:", when);
    for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n"))
        if (!strncmp(l, "folds ", 6) || !strncmp(l, "unfolds ", 8) || !strncmp(l, "spurious_faults ", 16))
            printf(" %s", l);
    printf("\n");
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    set_policy("always");
    /* 1 MiB: too small for a 2 MiB folio, so the blocks are 64 KiB folios. */
    char *raw = mmap(NULL, REGION + BLOCK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
        printf("TEST contpte_threads ... FAILED: mmap\n");
        return 1;
    }
    char *aligned = (char *)(((uintptr_t)raw + BLOCK - 1) & ~(BLOCK - 1));
    munmap(raw, aligned - raw);
    munmap(aligned + REGION, raw + REGION + BLOCK - (aligned + REGION));
    region = (volatile uint64_t *)aligned;
    memset(aligned, 0, REGION);

    contpte_stats("before");
    pthread_t w[WRITERS], others[3];
    for (long i = 0; i < WRITERS; i++)
        pthread_create(&w[i], NULL, writer, (void *)i);
    pthread_create(&others[0], NULL, protector, NULL);
    pthread_create(&others[1], NULL, lazyfree, NULL);
    pthread_create(&others[2], NULL, forker, NULL);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(w[i], NULL);
    __atomic_store_n(&writers_done, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 3; i++)
        pthread_join(others[i], NULL);
    set_policy(old_policy[0] ? old_policy : "never");
    contpte_stats("after");
    printf("contpte_threads: writers' rounds %ld %ld %ld %ld; %ld mprotect pairs, %ld lazyfree passes, %ld forks\n",
           n_rounds[0], n_rounds[1], n_rounds[2], n_rounds[3], n_protect, n_lazy, n_fork);

    int failed = 0;
    for (int i = 0; i < WRITERS; i++)
        if (failure[i][0]) {
            printf("TEST contpte_threads_writes ... FAILED: %s\n", failure[i]);
            failed++;
        }
    if (!failed)
        printf("TEST contpte_threads_writes ... ok\n");
    const char *why = errors_protect ? "mprotect failed"
                      : errors_lazy  ? "madvise failed"
                      : errors_fork  ? "a forked child saw a bad word or failed"
                                     : NULL;
    if (why)
        printf("TEST contpte_threads_others ... FAILED: %s\n", why);
    else
        printf("TEST contpte_threads_others ... ok\n");
    failed += why != NULL;
    printf("contpte_threads: %d passed, %d failed\n", 2 - failed, failed);
    return failed ? 1 : 0;
}
