// The simulated chip: the MicroPython unix port configured like ESP32_GENERIC
// (ports/esp32/mpconfigport.h, v1.28.0) where the firmware can tell the difference.
// Built 32-bit (mpconfigvariant.mk), so small ints are 31-bit, pointers 4 bytes and
// bignum digits 16-bit, as on the Xtensa chip.

#define MICROPY_CONFIG_ROM_LEVEL (MICROPY_CONFIG_ROM_LEVEL_EXTRA_FEATURES)

// esp32/mpconfigport.h:69: single-precision floats (an SNTP timestamp as a float is
// quantised to 128 s, as on the chip).
#define MICROPY_FLOAT_IMPL (MICROPY_FLOAT_IMPL_FLOAT)

// py/mpconfig.h's default, which the ESP32 port keeps: time.time() and gmtime() count
// from 2000-01-01. The unix port forces 1970 (patches/epoch-2000.patch makes that a default).
#define MICROPY_EPOCH_IS_2000 (1)
#define MICROPY_EPOCH_IS_1970 (0)

// The ESP32 port's Bluetooth: NimBLE with central mode, no L2CAP channels
// (esp32/mpconfigport.h:100-112).
#define MICROPY_PY_BLUETOOTH_ENABLE_CENTRAL_MODE (1)
#define MICROPY_PY_BLUETOOTH_ENABLE_L2CAP_CHANNELS (0)

// esp32/mpconfigport.h:73: eight scheduler slots (the unix default is four).
#define MICROPY_SCHEDULER_DEPTH (8)

// cryptolib as on the ESP32 (AES ECB/CBC; no CTR, no constants): mpconfig.h defaults.
// hashlib: md5, sha1, sha256 over mbedTLS; there is no SHA-512 on the chip.

#include "variants/mpconfigvariant_common.h"

// Error messages as terse as the chip's (esp32/mpconfigport.h:66).
#undef MICROPY_ERROR_REPORTING
#define MICROPY_ERROR_REPORTING (MICROPY_ERROR_REPORTING_NORMAL)

// time: the ESP32 port's module (esp32/modtime.c) over the host clock, from 2000.
#undef MICROPY_PY_TIME_INCLUDEFILE
#define MICROPY_PY_TIME_INCLUDEFILE "esp32_modtime.h"
#define MICROPY_PY_TIME_GMTIME_LOCALTIME_MKTIME (1)
// time.sleep() through mp_hal_delay_ms, which runs scheduled callbacks while it waits.
#undef MICROPY_PY_TIME_CUSTOM_SLEEP

// mp_hal_time_ns() counts from the port's epoch, as on the ESP32 (esp32/mphalport.c:254):
// time.time_ns() and LittleFS timestamps then agree with time.time(). esp32_clock.c.
#define mp_hal_time_ns mp_hal_time_ns
#include <stdint.h>
uint64_t mp_hal_time_ns(void);
