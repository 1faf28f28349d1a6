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

// BLE IRQ handlers in the ESP32's context: the NimBLE task's C stack, and no call that
// releases the GIL (esp32_rules.c; the hooks sit where esp32-sim.patch puts them).
#include <stddef.h>
typedef struct {
    int depth;          // handlers running (nested: a handler's call re-entered the host)
    int line;           // the air line (_air.py) is busy: the simulator's, not the firmware's
    size_t stack_limit; // the thread's limit outside the handler
    size_t base;        // the stack in use when the handler was entered
} sim_irq_state_t;
void sim_ble_irq_enter(sim_irq_state_t *saved);
void sim_ble_irq_exit(const sim_irq_state_t *saved);
void sim_ble_irq_failed(void);
void sim_gil_release(const char *what);
void sim_cstack_seen(size_t usage);
#define MICROPY_SIM_BLE_IRQ_ENTER() sim_irq_state_t sim_irq_saved; sim_ble_irq_enter(&sim_irq_saved)
#define MICROPY_SIM_BLE_IRQ_EXIT() sim_ble_irq_exit(&sim_irq_saved)
#define MICROPY_SIM_BLE_IRQ_FAILED() sim_ble_irq_failed()
#define MICROPY_SIM_GIL_RELEASE(what) sim_gil_release(what)
#define MICROPY_SIM_CSTACK_SEEN(usage) sim_cstack_seen(usage)
// The simulated flash is a Python block device (tools/sim/chip/flash.py): its frames, up to
// two calls deep, are stack the chip's C partition driver does not use, so a handler that
// touches the file system is not charged for them.
extern sim_irq_state_t sim_irq_state;
#define SIM_FLASH_SHIM_STACK (1024)
#define MICROPY_SIM_FLASH_CALL(ret, call) do { \
        size_t sim_limit_ = MP_STATE_THREAD(stack_limit); \
        if (sim_irq_state.depth) { \
            MP_STATE_THREAD(stack_limit) += SIM_FLASH_SHIM_STACK; \
        } \
        ret = (call); \
        MP_STATE_THREAD(stack_limit) = sim_limit_; \
} while (0)

// lwIP's sockets: CONFIG_LWIP_MAX_SOCKETS (10, IDF's default, kept by ESP32_GENERIC). The air
// line's own socket is not one of them (esp32_rules.c).
#include <stdint.h>
int sim_socket_free(void);          // 0, or the errno socket()/accept() fails with
uint32_t sim_socket_take(void);     // the socket's memory in the IDF heap (esp32_ram.c), 0: not lwIP's
void sim_socket_give(uint32_t handle);
#define MICROPY_SIM_SOCKET_FREE() sim_socket_free()
#define MICROPY_SIM_SOCKET_TAKE() sim_socket_take()
#define MICROPY_SIM_SOCKET_GIVE(handle) sim_socket_give(handle)
uint32_t sim_lwip_socket_take(void);
void sim_lwip_socket_give(uint32_t group);
int sim_lwip_socket_room(void);
#define SIM_SOCKET_UNCHARGED (1)    // esp32_ram.c's SIM_UNPOOLED

// mbedTLS reads the board's clock (esp32_clock.c), as the ESP32 port's platform_mbedtls_time()
// does (esp32/main.c:94): certificate dates are checked against it.
#include <time.h>
time_t sim_mbedtls_time(time_t *timer);
#define MICROPY_SIM_MBEDTLS_TIME sim_mbedtls_time

// ESP32 pace (esp32_pace.c): with ROOST_PACE set, the VM checks every MICROPY_VM_HOOK_COUNT jumps
// and returns whether the chip runs ahead of an ESP32, and sleeps if it does.
extern int sim_pace_on;
void sim_pace_tick(void);
#define MICROPY_VM_HOOK_COUNT (256)
#define MICROPY_VM_HOOK_INIT static unsigned int vm_hook_divisor = MICROPY_VM_HOOK_COUNT;
#define MICROPY_VM_HOOK_POLL if (sim_pace_on && --vm_hook_divisor == 0) { \
        vm_hook_divisor = MICROPY_VM_HOOK_COUNT; \
        sim_pace_tick(); \
}
#define MICROPY_VM_HOOK_LOOP MICROPY_VM_HOOK_POLL
#define MICROPY_VM_HOOK_RETURN MICROPY_VM_HOOK_POLL
// Reading the clock settles the pace first: CPU spent in C (mbedTLS, bignums) is otherwise
// waited out only at the next hook, after a time.ticks_us() that should already show it.
unsigned long sim_ticks_ms(void);
unsigned long sim_ticks_us(void);
#define mp_hal_ticks_ms() sim_ticks_ms()
#define mp_hal_ticks_us() sim_ticks_us()

// RAM as on ESP32_GENERIC (esp32_ram.c): the GC heap starts at -X heapsize and grows into the
// IDF's heap (esp32/mpconfigport.h:89-90), which NimBLE, Wi-Fi, lwIP and mbedTLS share.
#define MICROPY_GC_SPLIT_HEAP (1)
#define MICROPY_GC_SPLIT_HEAP_AUTO (1)
void *sim_idf_malloc(size_t n);
void *sim_idf_calloc(size_t nmemb, size_t size);
void sim_idf_free(void *ptr);
#define MP_PLAT_ALLOC_HEAP(size) sim_idf_malloc(size)
#define MP_PLAT_FREE_HEAP(ptr) sim_idf_free(ptr)
#define MICROPY_SIM_MBEDTLS_CALLOC sim_idf_calloc
#define MICROPY_SIM_MBEDTLS_FREE sim_idf_free
int sim_nimble_take(void);
void sim_nimble_give(void);
#define MICROPY_SIM_NIMBLE_TAKE() sim_nimble_take()
#define MICROPY_SIM_NIMBLE_GIVE() sim_nimble_give()
