/* report.h: the TEST lines of the glibc programs of user/c, as rt::test prints them
 * for the Rust ones (`TEST name ... ok` / `TEST name ... FAILED: why`), counted. */
#include <stdio.h>

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
