// The ESP32's rules the unix port does not keep by itself: BLE IRQ context, lwIP's socket table.
//
// BLE IRQ context as on an ESP32 (../shared/specs/esp32-port-behaviour.md section 1).
//
// On the chip a Python BLE handler runs on the NimBLE host task (extmod/modbluetooth.c,
// the MICROPY_PY_BLUETOOTH_USE_SYNC_EVENTS_WITH_INTERLOCK branch): with that task's small C
// stack, and holding the GIL. On the unix port it runs as a scheduled task on the main thread
// with the main thread's 8 MiB stack, so neither rule bites. esp32-sim.patch calls the hooks
// below around every handler (MICROPY_SIM_BLE_IRQ_ENTER/EXIT) and before every call that
// releases the GIL on the ESP32 (MICROPY_SIM_GIL_RELEASE).
//
// 1. C stack: the handler gets CONFIG_BT_NIMBLE_TASK_STACK_SIZE (6144, boards/sdkconfig.ble)
//    - 1024 (mpconfigport.h:63), and the stack check keeps MICROPY_STACK_CHECK_MARGIN (1024):
//    4096 bytes. Xtensa frames are larger than i386's (about 328 B against 256 B per Python
//    call, measured on both), so the i386 budget is 4096 * 256 / 328. Going past it raises
//    RuntimeError("maximum recursion depth exceeded"), as on the chip.
// 2. GIL: a call that releases the GIL inside a handler lets the main task run and collect
//    the handler's frames (they are referenced only from the NimBLE task's stack, which the
//    collector does not scan): silent heap corruption on the chip. The simulator raises
//    RuntimeError naming the call instead: its own rule, so the bug shows up loudly.
// 3. An uncaught exception prints "Unhandled exception in IRQ callback handler" and disables
//    the handler: extmod/modbluetooth.c does that on both ports; the printing is not the
//    handler's own output, so MICROPY_SIM_BLE_IRQ_FAILED lifts rule 2 for it.
//
// _simchip is the simulator's own module: the frozen shims report the GIL-releasing calls
// they stand in for (WLAN.scan, WLAN.connect, getaddrinfo), and the air line (_air.py),
// which is the simulator's wiring and not the firmware's, waits without tripping rule 2.

#include <stdlib.h>
#include "py/runtime.h"
#include "py/cstack.h"
#include "py/mpthread.h"
#include "py/mperrno.h"

#define SIM_NIMBLE_TASK_STACK (6144)
#define SIM_IRQ_STACK_ON_XTENSA (SIM_NIMBLE_TASK_STACK - 1024 - 1024)
#define SIM_FRAME_XTENSA (328)
#define SIM_FRAME_I386 (256)
#define SIM_IRQ_STACK (SIM_IRQ_STACK_ON_XTENSA * SIM_FRAME_I386 / SIM_FRAME_XTENSA)

// ROOST_IRQ_STACK=<bytes> replaces the budget: for measuring what a handler needs
// (with _simchip.irq_stack()'s high-water), never for judging firmware.
static size_t irq_stack(void) {
    static size_t budget;
    if (!budget) {
        const char *e = getenv("ROOST_IRQ_STACK");
        budget = e && atol(e) > 0 ? (size_t)atol(e) : SIM_IRQ_STACK;
    }
    return budget;
}

// Only the main thread runs BLE handlers and the firmware (the chip's firmware has no threads),
// so plain globals do.
sim_irq_state_t sim_irq_state;

void sim_ble_irq_enter(sim_irq_state_t *saved) {
    *saved = sim_irq_state;
    saved->stack_limit = MP_STATE_THREAD(stack_limit);
    // The stack used so far belongs to whatever the main thread was doing; the handler gets
    // its budget on top of it (the GC still scans the whole stack from the real top).
    sim_irq_state.base = mp_cstack_usage();
    MP_STATE_THREAD(stack_limit) = sim_irq_state.base + irq_stack();
    sim_irq_state.depth += 1;
    sim_irq_state.line = 0;
}

void sim_ble_irq_exit(const sim_irq_state_t *saved) {
    MP_STATE_THREAD(stack_limit) = saved->stack_limit;
    sim_irq_state.depth = saved->depth;
    sim_irq_state.line = saved->line;
    sim_irq_state.base = saved->base;
}

// The most stack a handler has used (at a call, where the check looks), i386 bytes: what a
// firmware's handler needs, whether or not it fits.
static size_t sim_irq_stack_high;

void sim_cstack_seen(size_t usage) {
    if (sim_irq_state.depth && !sim_irq_state.line && usage > sim_irq_state.base
        && usage - sim_irq_state.base > sim_irq_stack_high) {
        sim_irq_stack_high = usage - sim_irq_state.base;
    }
}

void sim_ble_irq_failed(void) {
    sim_irq_state.depth = 0;
}

void sim_gil_release(const char *what) {
    if (sim_irq_state.depth > 0 && !sim_irq_state.line) {
        mp_raise_msg_varg(&mp_type_RuntimeError,
            MP_ERROR_TEXT("%s in a BLE IRQ handler: it releases the GIL on ESP32, "
                "and the main task may free this handler's frames"), what);
    }
}

// lwIP's socket table: at most CONFIG_LWIP_MAX_SOCKETS open at once; the next socket() or
// accept() fails with ENFILE (lwip sockets.c alloc_socket). Each socket's memory comes from the
// IDF heap (esp32_ram.c); without it the call fails with ENOBUFS. Sockets made while the air
// line is busy are the simulator's and do not count.
#define SIM_LWIP_MAX_SOCKETS (10)
static int sim_sockets_open;

int sim_socket_free(void) {
    if (sim_irq_state.line) {
        return 0;
    }
    if (sim_sockets_open >= SIM_LWIP_MAX_SOCKETS) {
        return MP_ENFILE;
    }
    return sim_lwip_socket_room() ? 0 : MP_ENOBUFS;
}

uint32_t sim_socket_take(void) {
    if (sim_irq_state.line) {
        return 0;
    }
    sim_sockets_open += 1;
    uint32_t h = sim_lwip_socket_take();
    return h ? h : SIM_SOCKET_UNCHARGED;   // (sim_socket_free() saw room: not reached)
}

void sim_socket_give(uint32_t handle) {
    sim_sockets_open -= 1;
    sim_lwip_socket_give(handle);
}

// _simchip.gil_release(name): what a shim calls where the ESP32's C code releases the GIL.
static mp_obj_t simchip_gil_release(mp_obj_t what) {
    sim_gil_release(mp_obj_str_get_str(what));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(simchip_gil_release_obj, simchip_gil_release);

// _simchip.line(busy) -> the previous value: the air line is waiting for the world. Inside a
// handler the line's Python frames (the shim's method, _air.call, the socket and JSON under it)
// stand for the ESP32's C drivers, which use little stack: while the line is busy the handler
// gets SIM_AIR_SHIM_STACK more, as the flash shim does (mpconfigvariant.h). The shim's frames
// up to the call that takes the line are still charged: a few hundred bytes the chip does not
// spend, so the simulated handler errs on the side of overflowing.
#define SIM_AIR_SHIM_STACK (2048)

static mp_obj_t simchip_line(mp_obj_t busy) {
    mp_obj_t prev = mp_obj_new_bool(sim_irq_state.line);
    int now = mp_obj_is_true(busy);
    if (sim_irq_state.depth && now != sim_irq_state.line) {
        if (now) {
            MP_STATE_THREAD(stack_limit) += SIM_AIR_SHIM_STACK;
        } else {
            MP_STATE_THREAD(stack_limit) -= SIM_AIR_SHIM_STACK;
        }
    }
    sim_irq_state.line = now;
    return prev;
}
static MP_DEFINE_CONST_FUN_OBJ_1(simchip_line_obj, simchip_line);

// _simchip.sockets(): (lwIP sockets open, the most there can be): for tests.
static mp_obj_t simchip_sockets(void) {
    mp_obj_t t[2] = { MP_OBJ_NEW_SMALL_INT(sim_sockets_open), MP_OBJ_NEW_SMALL_INT(SIM_LWIP_MAX_SOCKETS) };
    return mp_obj_new_tuple(2, t);
}
static MP_DEFINE_CONST_FUN_OBJ_0(simchip_sockets_obj, simchip_sockets);

// _simchip.irq_stack(): (bytes a handler may use, handlers running now, the most a handler has
// used since boot), i386 bytes.
static mp_obj_t simchip_irq_stack(void) {
    mp_obj_t t[3] = { MP_OBJ_NEW_SMALL_INT(irq_stack()), MP_OBJ_NEW_SMALL_INT(sim_irq_state.depth),
                      MP_OBJ_NEW_SMALL_INT(sim_irq_stack_high) };
    return mp_obj_new_tuple(3, t);
}
static MP_DEFINE_CONST_FUN_OBJ_0(simchip_irq_stack_obj, simchip_irq_stack);

extern const mp_obj_fun_builtin_fixed_t simchip_set_clock_obj;   // esp32_clock.c
extern const mp_obj_fun_builtin_fixed_t simchip_pace_obj;        // esp32_pace.c
extern const mp_obj_fun_builtin_fixed_t simchip_idf_take_obj;    // esp32_ram.c
extern const mp_obj_fun_builtin_fixed_t simchip_idf_give_obj;
extern const mp_obj_fun_builtin_fixed_t simchip_idf_heap_obj;
extern const mp_obj_fun_builtin_fixed_t simchip_ram_obj;

static const mp_rom_map_elem_t simchip_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR__simchip) },
    { MP_ROM_QSTR(MP_QSTR_gil_release), MP_ROM_PTR(&simchip_gil_release_obj) },
    { MP_ROM_QSTR(MP_QSTR_line), MP_ROM_PTR(&simchip_line_obj) },
    { MP_ROM_QSTR(MP_QSTR_irq_stack), MP_ROM_PTR(&simchip_irq_stack_obj) },
    { MP_ROM_QSTR(MP_QSTR_sockets), MP_ROM_PTR(&simchip_sockets_obj) },
    { MP_ROM_QSTR(MP_QSTR_set_clock), MP_ROM_PTR(&simchip_set_clock_obj) },
    { MP_ROM_QSTR(MP_QSTR_pace), MP_ROM_PTR(&simchip_pace_obj) },
    { MP_ROM_QSTR(MP_QSTR_idf_take), MP_ROM_PTR(&simchip_idf_take_obj) },
    { MP_ROM_QSTR(MP_QSTR_idf_give), MP_ROM_PTR(&simchip_idf_give_obj) },
    { MP_ROM_QSTR(MP_QSTR_idf_heap), MP_ROM_PTR(&simchip_idf_heap_obj) },
    { MP_ROM_QSTR(MP_QSTR_ram), MP_ROM_PTR(&simchip_ram_obj) },
};
static MP_DEFINE_CONST_DICT(simchip_globals, simchip_globals_table);

const mp_obj_module_t simchip_module = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&simchip_globals,
};

MP_REGISTER_MODULE(MP_QSTR__simchip, simchip_module);
