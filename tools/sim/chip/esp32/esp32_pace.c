// ESP32 pace (issue 18, item 5; docs/simulator.md, "ESP32 pace"): the chip runs at the speed of
// an ESP32 at 240 MHz instead of the host's 50-100x, so handshakes inside BLE handlers, PBKDF2,
// TLS, watchdogs and keepalives play out in the time they take on the chip.
//
// ROOST_PACE=<factor> (tools/sim/pace.py calibrates it: the host's Dhrystone rate over the
// ESP32's). The VM calls sim_pace_tick() every MICROPY_VM_HOOK_COUNT jumps and returns
// (mpconfigvariant.h); it reads the thread's CPU time and, once the chip is more than a
// millisecond ahead of an ESP32 (wall time < factor x CPU time), waits out the difference.
// CPU spent in C (mbedTLS, bignums, AES) counts as well, at the next tick; time the chip spends
// blocked (poll, sockets, sleep) is not CPU time, so waits are not stretched. A paced chip keeps
// a host core busy: see sim_pace_tick. Work interleaved with the waits still costs a little more
// CPU than work alone; the calibration measures the paced chip and corrects the factor for it.

#include <stdlib.h>
#include <time.h>
#include "py/runtime.h"

int sim_pace_on;
static double pace_factor = 1.0;
static int64_t pace_last_cpu_ns;
static int64_t pace_owed_ns;

static int64_t clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

__attribute__((constructor)) static void sim_pace_init(void) {
    const char *s = getenv("ROOST_PACE");
    double f = (s && *s) ? strtod(s, NULL) : 1.0;
    if (f > 1.0) {
        pace_factor = f;
        pace_last_cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        sim_pace_on = 1;
    }
}

void sim_pace_tick(void) {
    int64_t cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    pace_owed_ns += (int64_t)((double)(cpu - pace_last_cpu_ns) * (pace_factor - 1.0));
    pace_last_cpu_ns = cpu;
    if (pace_owed_ns < 1000000) {
        return;
    }
    // Spin rather than sleep: a core that sleeps most of the time is clocked down by the host,
    // and the chip's next work then costs several times the CPU it cost at full speed.
    int64_t until = clock_ns(CLOCK_MONOTONIC) + pace_owed_ns;
    while (clock_ns(CLOCK_MONOTONIC) < until) {
    }
    pace_owed_ns = 0;
    pace_last_cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

// The port's ticks (ports/unix/unix_mphal.c, the monotonic clock), read once the pace is settled.
static int64_t sim_monotonic_ns(void) {
    if (sim_pace_on) {
        sim_pace_tick();
    }
    return clock_ns(CLOCK_MONOTONIC);
}

unsigned long sim_ticks_ms(void) {
    return (unsigned long)(sim_monotonic_ns() / 1000000);
}

unsigned long sim_ticks_us(void) {
    return (unsigned long)(sim_monotonic_ns() / 1000);
}

// _simchip.pace(): the factor the chip runs slower than the host (1.0: host speed).
static mp_obj_t simchip_pace(void) {
    return mp_obj_new_float((mp_float_t)pace_factor);
}
MP_DEFINE_CONST_FUN_OBJ_0(simchip_pace_obj, simchip_pace);
