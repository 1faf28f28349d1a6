// The ESP32's RAM (issue 18, item 3; docs/simulator.md, "RAM"; ../shared/specs/esp32-port-behaviour.md
// section 5): one heap shared by MicroPython and the IDF, as on ESP32_GENERIC.
//
// On the chip the GC heap is not one block. ports/esp32/main.c takes MICROPY_GC_INITIAL_HEAP_SIZE
// (56 KB, mpconfigport.h:32) from the IDF's heap at boot; when an allocation fails, py/gc.c:282
// (MICROPY_GC_SPLIT_HEAP_AUTO) adds an area of MIN(largest free IDF block, MAX(current total,
// needed)) bytes, and gives an area back only when it is completely empty. Everything else the
// chip runs takes from the same IDF heap while it is active: NimBLE, the Wi-Fi driver, lwIP's
// sockets, mbedTLS (CONFIG_MBEDTLS_DEFAULT_MEM_ALLOC). So a program that grows its heap can starve
// TLS, and BLE left on can starve everything (MicroPython issues #7038, #14421, #16650).
//
// ROOST_RAM selects the profile (tools/sim/board.py sets it):
//   esp32  ESP32_GENERIC without PSRAM: the data regions below, the initial heap in the first.
//   psram  ESP32_GENERIC-SPIRAM: the same internal regions plus 4 MB of PSRAM; allocations of
//          CONFIG_SPIRAM_MALLOC_ALWAYSINTERNAL (8192, boards/sdkconfig.spiram) bytes or more go to
//          PSRAM first, smaller ones to internal RAM first; NimBLE, Wi-Fi and lwIP stay internal.
//   unset  a fixed heap (-X heapsize, never grows) and an IDF that never runs out: experiments and
//          scripts run on the chip (tests/mpy.py), not boards.
//
// The regions are blocks with first-fit placement, a 4-byte header and 16-byte minimum per
// block (IDF 5's TLSF multi_heap): fragmentation and "largest free block" follow from the
// allocations, they are not a figure kept on the side. The sizes are chosen so that the pool
// answers as the freshest report in the spec (MicroPython v1.27 on ESP32_GENERIC): after one
// growth the GC heap is 112,000 B and the IDF has 94,256 B free with a largest block of 53,248 B;
// the two smaller regions are the sizes MicroPython's docs show for esp32.idf_heap_info().

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "py/runtime.h"
#include "py/gc.h"

#define SIM_CAP_INTERNAL (1)
#define SIM_CAP_SPIRAM (2)
#define SIM_CAP_DEFAULT (SIM_CAP_INTERNAL | SIM_CAP_SPIRAM)

// Free at MicroPython's start: 110,592 B in the region that holds the initial heap (its largest
// block), 15,072 and 25,936 B in the others: 151,600 B (the IDF's own start-up took the rest).
#define SIM_DRAM0 (110592 + 57344 + 4)   // the initial GC heap (57,344 B and its header) + free
#define SIM_DRAM1 (15072)
#define SIM_DRAM2 (113840)
#define SIM_DRAM2_IDF_AT_BOOT (113840 - 25936)
#define SIM_SPIRAM (4 * 1024 * 1024)
#define SIM_SPIRAM_ALWAYSINTERNAL (8192)
#define SIM_BLOCK_HEADER (4)
#define SIM_BLOCK_MIN (16)

typedef struct {
    uint32_t start, size;
} sim_block_t;

typedef struct {
    uint32_t size;
    uint32_t free;           // size less the blocks in use (kept: every mbedTLS calloc reads it)
    uint32_t min_free;       // the least free this region has had since boot
    int caps;
    sim_block_t *used;       // sorted by start
    size_t n_used, cap_used;
} sim_region_t;

#define SIM_MAX_REGIONS (4)
static sim_region_t regions[SIM_MAX_REGIONS];
static int n_regions;
static int ram_ready;       // 0: not yet read ROOST_RAM; 1: a pool; -1: fixed heap, no pool
static const char *ram_profile = "fixed";
static pthread_mutex_t ram_lock = PTHREAD_MUTEX_INITIALIZER;

// A handle names a live block: its region (+1) in the top byte, its start below. 0: none.
// SIM_UNPOOLED: memory that no pool accounts for (the fixed-heap profile).
#define SIM_HANDLE(r, start) ((uint32_t)((r) + 1) << 24 | (start))
#define SIM_UNPOOLED (1)

static uint32_t region_largest(const sim_region_t *rg) {
    uint32_t at = 0, best = 0;
    for (size_t i = 0; i <= rg->n_used; i++) {
        uint32_t end = i < rg->n_used ? rg->used[i].start : rg->size;
        if (end - at > best) {
            best = end - at;
        }
        if (i < rg->n_used) {
            at = rg->used[i].start + rg->used[i].size;
        }
    }
    return best > SIM_BLOCK_HEADER ? best - SIM_BLOCK_HEADER : 0;
}

// First fit in one region: the block's handle, or 0.
static uint32_t region_take(int r, uint32_t n) {
    sim_region_t *rg = &regions[r];
    uint32_t need = (n + SIM_BLOCK_HEADER + 3) & ~3u;
    if (need < SIM_BLOCK_MIN) {
        need = SIM_BLOCK_MIN;
    }
    uint32_t at = 0;
    size_t i = 0;
    for (;; i++) {
        uint32_t end = i < rg->n_used ? rg->used[i].start : rg->size;
        if (end >= at && end - at >= need) {
            break;
        }
        if (i == rg->n_used) {
            return 0;
        }
        at = rg->used[i].start + rg->used[i].size;
    }
    if (rg->n_used == rg->cap_used) {
        rg->cap_used = rg->cap_used ? rg->cap_used * 2 : 64;
        rg->used = realloc(rg->used, rg->cap_used * sizeof(sim_block_t));
        if (rg->used == NULL) {
            abort();
        }
    }
    memmove(&rg->used[i + 1], &rg->used[i], (rg->n_used - i) * sizeof(sim_block_t));
    rg->used[i].start = at;
    rg->used[i].size = need;
    rg->n_used += 1;
    rg->free -= need;
    if (rg->free < rg->min_free) {
        rg->min_free = rg->free;
    }
    return SIM_HANDLE(r, at);
}

static void region_give(uint32_t handle) {
    int r = (int)(handle >> 24) - 1;
    uint32_t start = handle & 0xffffff;
    if (r < 0 || r >= n_regions) {
        return;
    }
    sim_region_t *rg = &regions[r];
    for (size_t i = 0; i < rg->n_used; i++) {
        if (rg->used[i].start == start) {
            rg->free += rg->used[i].size;
            memmove(&rg->used[i], &rg->used[i + 1], (rg->n_used - i - 1) * sizeof(sim_block_t));
            rg->n_used -= 1;
            return;
        }
    }
}

static void add_region(uint32_t size, int caps) {
    regions[n_regions].size = size;
    regions[n_regions].free = size;
    regions[n_regions].min_free = size;
    regions[n_regions].caps = caps;
    n_regions += 1;
}

extern long heap_size;  // ports/unix/main.c: -X heapsize, the initial GC heap

static uint32_t take_locked(uint32_t n, int caps);

static void ram_init(void) {
    if (ram_ready) {
        return;
    }
    const char *p = getenv("ROOST_RAM");
    if (p == NULL || (strcmp(p, "esp32") != 0 && strcmp(p, "psram") != 0)) {
        ram_ready = -1;
        return;
    }
    bool psram = strcmp(p, "psram") == 0;
    ram_profile = psram ? "psram" : "esp32";
    add_region(SIM_DRAM0, SIM_CAP_INTERNAL);
    add_region(SIM_DRAM1, SIM_CAP_INTERNAL);
    add_region(SIM_DRAM2, SIM_CAP_INTERNAL);
    region_take(2, SIM_DRAM2_IDF_AT_BOOT - SIM_BLOCK_HEADER);
    if (psram) {
        add_region(SIM_SPIRAM, SIM_CAP_SPIRAM);
    }
    ram_ready = 1;
    // main.c's MP_PLAT_ALLOC_HEAP(MICROPY_GC_INITIAL_HEAP_SIZE): the unix port mallocs the heap
    // itself; the pool only accounts for it. A ROMFS image is read into the heap here but is
    // flash on the chip: the supervisor adds its bytes to -X heapsize and names them in
    // ROOST_RAM_ROMFS, and they are not the IDF's.
    const char *rom = getenv("ROOST_RAM_ROMFS");
    long initial = heap_size - (rom ? atol(rom) : 0);
    if (take_locked((uint32_t)initial, SIM_CAP_DEFAULT) == 0) {
        fprintf(stderr, "mp_task_heap allocation failed!\n");
        exit(1);
    }
}

// heap_caps_malloc's order: with PSRAM, a large default allocation tries PSRAM first.
static uint32_t take_locked(uint32_t n, int caps) {
    ram_init();
    if (ram_ready < 0) {
        return SIM_UNPOOLED;
    }
    for (int pass = 0; pass < 2; pass++) {
        int want = caps;
        if (caps == SIM_CAP_DEFAULT) {
            int spiram_first = n >= SIM_SPIRAM_ALWAYSINTERNAL;
            want = (pass == 0) == spiram_first ? SIM_CAP_SPIRAM : SIM_CAP_INTERNAL;
        } else if (pass) {
            break;
        }
        for (int r = 0; r < n_regions; r++) {
            if (regions[r].caps & want) {
                uint32_t h = region_take(r, n);
                if (h) {
                    return h;
                }
            }
        }
    }
    return 0;
}

// One block of n bytes where malloc() would put it: a handle, or 0 when the pool cannot serve it.
static uint32_t sim_idf_take(size_t n) {
    pthread_mutex_lock(&ram_lock);
    uint32_t h = take_locked((uint32_t)n, SIM_CAP_DEFAULT);
    pthread_mutex_unlock(&ram_lock);
    return h;
}

static void sim_idf_give(uint32_t handle) {
    if (handle == 0 || handle == SIM_UNPOOLED) {
        return;
    }
    pthread_mutex_lock(&ram_lock);
    region_give(handle);
    pthread_mutex_unlock(&ram_lock);
}

// Memory that is really used (mbedTLS, the GC heap's new areas): the handle sits in front.
#define SIM_PTR_HEADER (8)

void *sim_idf_malloc(size_t n) {
    uint32_t h = sim_idf_take(n);
    if (h == 0) {
        return NULL;
    }
    uint8_t *p = malloc(n + SIM_PTR_HEADER);
    if (p == NULL) {
        sim_idf_give(h);
        return NULL;
    }
    memcpy(p, &h, sizeof(h));
    return p + SIM_PTR_HEADER;
}

void sim_idf_free(void *ptr) {
    if (ptr == NULL) {
        return;
    }
    uint8_t *p = (uint8_t *)ptr - SIM_PTR_HEADER;
    uint32_t h;
    memcpy(&h, p, sizeof(h));
    sim_idf_give(h);
    free(p);
}

// mbedTLS's calloc and free (MBEDTLS_PLATFORM_CALLOC_MACRO, esp32-sim.patch): as on the chip, a
// TLS session's buffers and handshake come from the IDF heap, not from the GC heap; when it is
// short, mbedTLS fails with its own ALLOC_FAILED errors.
void *sim_idf_calloc(size_t nmemb, size_t size) {
    if (size && nmemb > SIZE_MAX / size) {
        return NULL;
    }
    void *p = sim_idf_malloc(nmemb * size);
    if (p) {
        memset(p, 0, nmemb * size);
    }
    return p;
}

// py/gc.c asks how large a new area could be: the IDF's largest free block
// (esp32/gccollect.c:84, heap_caps_get_largest_free_block(MALLOC_CAP_DEFAULT)).
size_t gc_get_max_new_split(void) {
    pthread_mutex_lock(&ram_lock);
    ram_init();
    uint32_t best = 0;
    for (int r = 0; r < n_regions; r++) {
        uint32_t l = region_largest(&regions[r]);
        if (l > best) {
            best = l;
        }
    }
    pthread_mutex_unlock(&ram_lock);
    return best;
}

// The drivers' memory, charged by size (NimBLE, Wi-Fi, lwIP sockets): on the chip each is many
// allocations of a buffer or a structure (Wi-Fi's are 1,600-byte buffers), not one block, so a
// fragmented heap can still serve them. The simulator takes such a charge in pieces of at most
// SIM_DRIVER_PIECE bytes, and answers a group of blocks: its index + 1, or 0 when the pool
// cannot serve it all (then nothing is taken).
#define SIM_DRIVER_PIECE (1600)
#define SIM_MAX_GROUPS (64)
#define SIM_MAX_PIECES (48)
static struct {
    int n;
    uint32_t block[SIM_MAX_PIECES];
} groups[SIM_MAX_GROUPS];

uint32_t sim_idf_take_pieces(size_t n) {
    pthread_mutex_lock(&ram_lock);
    ram_init();
    uint32_t result = 0;
    if (ram_ready < 0) {
        result = SIM_UNPOOLED;
    } else {
        for (int g = 0; g < SIM_MAX_GROUPS && !result; g++) {
            if (groups[g].n) {
                continue;
            }
            size_t left = n;
            while (left && groups[g].n < SIM_MAX_PIECES) {
                uint32_t piece = left > SIM_DRIVER_PIECE ? SIM_DRIVER_PIECE : left;
                uint32_t h = take_locked(piece, SIM_CAP_INTERNAL);
                if (!h) {
                    break;
                }
                groups[g].block[groups[g].n++] = h;
                left -= piece;
            }
            if (left) {
                while (groups[g].n) {
                    region_give(groups[g].block[--groups[g].n]);
                }
                break;
            }
            result = (uint32_t)g + 2;     // 0: failed, 1: SIM_UNPOOLED
        }
    }
    pthread_mutex_unlock(&ram_lock);
    return result;
}

void sim_idf_give_pieces(uint32_t group) {
    if (group < 2 || group - 2 >= SIM_MAX_GROUPS) {
        return;
    }
    pthread_mutex_lock(&ram_lock);
    int g = group - 2;
    while (groups[g].n) {
        region_give(groups[g].block[--groups[g].n]);
    }
    pthread_mutex_unlock(&ram_lock);
}

// NimBLE's memory (esp32-sim.patch, extmod/nimble/modbluetooth_nimble.c): the host's pools and
// the controller's buffers that nimble_port_init() takes on the chip, about 32 KB (the spec,
// section 5). When they cannot be had, nimble_port_init() fails and BLE.active(True) raises
// OSError(EIO) (MICROPY_BLUETOOTH_NIMBLE_PORT_INIT_RETURNS_ERROR, esp32/mpconfigport.h:111).
#define SIM_NIMBLE_BYTES (32 * 1024)
static uint32_t nimble_handle;

int sim_nimble_take(void) {
    if (!nimble_handle) {
        nimble_handle = sim_idf_take_pieces(SIM_NIMBLE_BYTES);
    }
    return nimble_handle != 0;
}

void sim_nimble_give(void) {
    sim_idf_give_pieces(nimble_handle);
    nimble_handle = 0;
}

// lwIP's memory for one socket (netconn, PCB and its share of buffers): 4-7 KB each (the spec,
// section 5); the simulator charges 5 KB when the socket is made. With none to be had, lwIP's
// lwip_socket() fails "could not create netconn": ENOBUFS.
#define SIM_LWIP_SOCKET_BYTES (5 * 1024)

uint32_t sim_lwip_socket_take(void) {
    return sim_idf_take_pieces(SIM_LWIP_SOCKET_BYTES);
}

void sim_lwip_socket_give(uint32_t group) {
    sim_idf_give_pieces(group);
}

int sim_lwip_socket_room(void) {
    uint32_t h = sim_lwip_socket_take();
    sim_idf_give_pieces(h);
    return h != 0;
}

// _simchip.idf_take(n) -> a handle, or 0 when the IDF heap cannot serve n bytes of a driver's
// internal RAM (in pieces, as above); _simchip.idf_give(handle). For the shims (network.WLAN).
static mp_obj_t simchip_idf_take(mp_obj_t n) {
    return mp_obj_new_int_from_uint(sim_idf_take_pieces(mp_obj_get_int(n)));
}
MP_DEFINE_CONST_FUN_OBJ_1(simchip_idf_take_obj, simchip_idf_take);

static mp_obj_t simchip_idf_give(mp_obj_t h) {
    sim_idf_give_pieces(mp_obj_get_int_truncated(h));
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_1(simchip_idf_give_obj, simchip_idf_give);

// _simchip.idf_heap(spiram) -> [(total, free, largest free block, least free since boot)] for
// each internal region (or, with spiram true, each PSRAM region), as esp32.idf_heap_info()
// answers; [] with a fixed heap.
static mp_obj_t simchip_idf_heap(mp_obj_t spiram) {
    pthread_mutex_lock(&ram_lock);
    ram_init();
    int want = mp_obj_is_true(spiram) ? SIM_CAP_SPIRAM : SIM_CAP_INTERNAL;
    mp_obj_t out = mp_obj_new_list(0, NULL);
    for (int r = 0; r < n_regions; r++) {
        if (regions[r].caps & want) {
            mp_obj_t t[4] = {
                mp_obj_new_int_from_uint(regions[r].size),
                mp_obj_new_int_from_uint(regions[r].free),
                mp_obj_new_int_from_uint(region_largest(&regions[r])),
                mp_obj_new_int_from_uint(regions[r].min_free),
            };
            mp_obj_list_append(out, mp_obj_new_tuple(4, t));
        }
    }
    pthread_mutex_unlock(&ram_lock);
    return out;
}
MP_DEFINE_CONST_FUN_OBJ_1(simchip_idf_heap_obj, simchip_idf_heap);

// _simchip.ram() -> "esp32", "psram" or "fixed": the profile this chip runs.
static mp_obj_t simchip_ram(void) {
    pthread_mutex_lock(&ram_lock);
    ram_init();
    pthread_mutex_unlock(&ram_lock);
    return mp_obj_new_str(ram_profile, strlen(ram_profile));
}
MP_DEFINE_CONST_FUN_OBJ_0(simchip_ram_obj, simchip_ram);
