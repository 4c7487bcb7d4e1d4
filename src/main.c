/*
 * The metaserve executable: `metaserve <command> ...`. Owns the process set-up every command
 * relies on (the choice of OpenBLAS kernels, OpenBLAS single-threaded: parallelism belongs to our
 * own threads, DESIGN.md §5); the command table, dispatch and the commands live in src/cli/
 * (cli_main).
 *
 * This is the only file that ends the process: a command returns its exit status (cli.h: 0 ok,
 * 1 failed, 2 bad usage or input) and main() returns it.
 */
#include <cblas.h>
#include <unistd.h>

#include "cli/cli.h"
#include "metaserve/nn/blas.h"

// OpenBLAS reads its environment when the process loads it. When it fell back to generic kernels
// on a CPU it does not know (nn/blas.h), or when OPENBLAS_NUM_THREADS is unset, start again with
// the variables set; with them set, the new image never comes back here. Values already in the
// environment are never changed. If exec fails, the process goes on as it is.
static void blas_autocore(char **argv) {
    if (blas_setup_env()) execv("/proc/self/exe", argv);
}

int main(int argc, char **argv) {
    blas_autocore(argv);
    openblas_set_num_threads(1);
    return cli_main(argc, argv);
}
