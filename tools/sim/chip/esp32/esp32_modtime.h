// The time module as the ESP32 port has it (ports/esp32/modtime.c): seconds since
// 2000-01-01, gmtime == localtime (no time zones on the chip), from the board's clock
// (esp32_clock.c). Included by extmod/modtime.c through MICROPY_PY_TIME_INCLUDEFILE.

#include <sys/time.h>
#include "py/obj.h"
#include "shared/timeutils/timeutils.h"

static void mp_time_localtime_get(timeutils_struct_time_t *tm) {
    timeutils_seconds_since_2000_to_struct_time(mp_hal_time_ns() / 1000000000ULL, tm);
}

static mp_obj_t mp_time_time_get(void) {
    return mp_obj_new_int_from_ull(mp_hal_time_ns() / 1000000000ULL);
}
