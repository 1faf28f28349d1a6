// The board's clock, counted from the port's epoch (2000-01-01) as the ESP32 keeps it
// (ports/esp32/mphalport.c:254; its gettimeofday() counts from 2000, and from 0 at power on,
// until RTC.datetime() or ntptime sets it).
//
// The clock is the host's, less a base: the host time (µs since 1970) at which the board's
// clock read 2000-01-01 00:00:00. The supervisor (tools/sim/board.py) passes the base in
// ROOST_CLOCK_BASE_US: the instant of power on, kept across resets and deep sleep as the
// ESP32's RTC keeps running; a power cut starts it again. Without it (a script run on the
// chip, not a board) the board's clock is the host's.
//
// mbedTLS validates certificate dates against this clock, as on the ESP32 (esp32/main.c:94,
// CONFIG_MBEDTLS_HAVE_TIME_DATE): before the clock is set every certificate is "not yet valid".

#include <stdlib.h>
#include <sys/time.h>
#include "py/runtime.h"
#include "py/mphal.h"
#include "shared/timeutils/timeutils.h"

static int64_t clock_base_us;
static bool clock_have_base;

static int64_t host_us(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static int64_t base_us(void) {
    if (!clock_have_base) {
        const char *s = getenv("ROOST_CLOCK_BASE_US");
        clock_base_us = (s && *s) ? strtoll(s, NULL, 10) : (int64_t)TIMEUTILS_SECONDS_1970_TO_2000 * 1000000;
        clock_have_base = true;
    }
    return clock_base_us;
}

uint64_t mp_hal_time_ns(void) {
    int64_t us = host_us() - base_us();
    return us < 0 ? 0 : (uint64_t)us * 1000ULL;
}

time_t sim_mbedtls_time(time_t *timer) {
    uint64_t s = mp_hal_time_ns() / 1000000000ULL + TIMEUTILS_SECONDS_1970_TO_2000;
    // i386's time_t ends in 2038 (the ESP32's IDF has a 64-bit one): a clock set later reads as
    // 2038-01-19, which is still after any certificate's end that falls before it.
    time_t t = s > INT32_MAX ? (time_t)INT32_MAX : (time_t)s;
    if (timer) {
        *timer = t;
    }
    return t;
}

// _simchip.set_clock(seconds, us) -> the new base: what machine.RTC().datetime(...) does to the
// chip's RTC (seconds since 2000); the shim hands the base to the supervisor for the next boot.
static mp_obj_t simchip_set_clock(mp_obj_t secs_in, mp_obj_t us_in) {
    int64_t board_us = (int64_t)mp_obj_get_ll(secs_in) * 1000000 + mp_obj_get_int(us_in);
    base_us();
    clock_base_us = host_us() - board_us;
    return mp_obj_new_int_from_ll(clock_base_us);
}
MP_DEFINE_CONST_FUN_OBJ_2(simchip_set_clock_obj, simchip_set_clock);
