// The board's clock, counted from the port's epoch (2000-01-01) as the ESP32 keeps it
// (ports/esp32/mphalport.c:254; its gettimeofday() counts from 2000 once RTC.datetime()
// or ntptime has set it).

#include <sys/time.h>
#include "py/mphal.h"
#include "shared/timeutils/timeutils.h"

uint64_t mp_hal_time_ns(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t s = (uint64_t)tv.tv_sec - TIMEUTILS_SECONDS_1970_TO_2000;
    return s * 1000000000ULL + (uint64_t)tv.tv_usec * 1000ULL;
}
