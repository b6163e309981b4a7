/* Request ids and jitter. See id.h. xorshift128+ seeded from getrandom(); unique, not secret. */
#include "utils/id.h"

#include <stdint.h>
#include <sys/random.h>
#include <time.h>

static uint64_t state[2];

static uint64_t next(void)
{
    if (state[0] == 0 && state[1] == 0) {
        if (getrandom(state, sizeof state, 0) != (ssize_t)sizeof state || (state[0] | state[1]) == 0) {
            state[0] = lx_now_ns() | 1;
            state[1] = (uint64_t)(uintptr_t)&state ^ 0x9e3779b97f4a7c15ull;
        }
    }
    uint64_t s1 = state[0];
    const uint64_t s0 = state[1];
    state[0] = s0;
    s1 ^= s1 << 23;
    state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return state[1] + s0;
}

void lx_request_id_new(char out[LX_REQUEST_ID_MAX])
{
    static const char hex[] = "0123456789abcdef";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000, r = next();
    memcpy(out, "req_", 4);
    for (int i = 0; i < 12; i++) /* the time first, most significant digit first: ids sort by time */
        out[4 + i] = hex[(ms >> ((11 - i) * 4)) & 15];
    for (int i = 0; i < 12; i++)
        out[16 + i] = hex[(r >> (i * 4)) & 15];
    out[28] = '\0';
}

bool lx_request_id_acceptable(lx_slice id)
{
    if (id.len == 0 || id.len >= LX_REQUEST_ID_MAX) return false;
    for (size_t i = 0; i < id.len; i++) {
        unsigned char c = (unsigned char)id.p[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') return false;
    }
    return true;
}

double lx_random_unit(void) { return (double)(next() >> 11) * 0x1.0p-53; }
