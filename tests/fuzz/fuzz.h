/*
 * Shared by the fuzz targets (fuzz_*.c): the libFuzzer entry points and an invariant check.
 *
 * LX_FUZZ_CHECK states a property the code under test promises (not merely "it did not crash"); a
 * broken one aborts, which libFuzzer and the replay driver (replay.c) report as a crash with the input.
 */
#ifndef LX_FUZZ_H
#define LX_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define LX_FUZZ_CHECK(cond)                                                                                            \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);                               \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#endif
