// srpmath: the two costly operations of a Security 2 handshake (lib/srp6a.py), done by mbedTLS,
// which every ESP32 MicroPython already links for TLS. On an ESP32 mbedtls_mpi_exp_mod and
// mbedtls_sha512 run on the chip's RSA and SHA accelerators (ESP-IDF's MBEDTLS_MPI_EXP_MOD_ALT,
// MBEDTLS_SHA512_ALT); in pure Python the same handshake takes about 20 s at an ESP32's pace
// (docs/budgets.md, "Security 2 on the chip"). Only in a custom build (manifest.py,
// USER_C_MODULES=cmodules/micropython.cmake); lib/srp6a.py falls back to Python without it.
//
//   srpmath.pow_mod(base, exp, mod) -> bytes   all big-endian bytes; the result is len(mod) long
//   srpmath.sha512(part, ...) -> bytes         SHA-512 of the parts, in order (no joined copy)
//
// Both run inside BLE IRQ handlers (firmware/prov/ble.py answers there): a small C stack (the
// MPIs live on mbedTLS's heap), nothing that blocks or gives up the GIL.
#include "py/mperrno.h"
#include "py/runtime.h"
#include "py/objstr.h"

#include "mbedtls/bignum.h"
#include "mbedtls/sha512.h"

#define SRPMATH_MAX_BYTES (512)     // 4096 bits: the largest modulus the ESP32's RSA unit takes

static void srpmath_check(int ret) {
    if (ret == MBEDTLS_ERR_MPI_ALLOC_FAILED) {
        mp_raise_OSError(MP_ENOMEM);
    }
    if (ret != 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("mbedtls bignum error"));
    }
}

static mp_obj_t srpmath_pow_mod(mp_obj_t base_in, mp_obj_t exp_in, mp_obj_t mod_in) {
    mp_buffer_info_t base, exp, mod;
    mp_get_buffer_raise(base_in, &base, MP_BUFFER_READ);
    mp_get_buffer_raise(exp_in, &exp, MP_BUFFER_READ);
    mp_get_buffer_raise(mod_in, &mod, MP_BUFFER_READ);
    if (mod.len == 0 || mod.len > SRPMATH_MAX_BYTES || (((const uint8_t *)mod.buf)[mod.len - 1] & 1) == 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("modulus must be odd and at most 4096 bits"));
    }
    // The result's buffer first: a MemoryError now leaves no MPIs behind.
    vstr_t out;
    vstr_init_len(&out, mod.len);
    mbedtls_mpi b, e, n, r;
    mbedtls_mpi_init(&b);
    mbedtls_mpi_init(&e);
    mbedtls_mpi_init(&n);
    mbedtls_mpi_init(&r);
    int ret = mbedtls_mpi_read_binary(&b, base.buf, base.len);
    if (ret == 0) {
        ret = mbedtls_mpi_read_binary(&e, exp.buf, exp.len);
    }
    if (ret == 0) {
        ret = mbedtls_mpi_read_binary(&n, mod.buf, mod.len);
    }
    if (ret == 0) {
        ret = mbedtls_mpi_mod_mpi(&b, &b, &n);      // the accelerator wants base < mod
    }
    if (ret == 0) {
        ret = mbedtls_mpi_exp_mod(&r, &b, &e, &n, NULL);
    }
    if (ret == 0) {
        ret = mbedtls_mpi_write_binary(&r, (unsigned char *)out.buf, mod.len);
    }
    mbedtls_mpi_free(&b);
    mbedtls_mpi_free(&e);
    mbedtls_mpi_free(&n);
    mbedtls_mpi_free(&r);
    if (ret != 0) {
        vstr_clear(&out);
        srpmath_check(ret);
    }
    return mp_obj_new_bytes_from_vstr(&out);
}
static MP_DEFINE_CONST_FUN_OBJ_3(srpmath_pow_mod_obj, srpmath_pow_mod);

static mp_obj_t srpmath_sha512(size_t n_args, const mp_obj_t *args) {
    vstr_t out;
    vstr_init_len(&out, 64);
    mbedtls_sha512_context ctx;
    mbedtls_sha512_init(&ctx);
    int ret = mbedtls_sha512_starts(&ctx, 0);
    for (size_t i = 0; ret == 0 && i < n_args; i++) {
        mp_buffer_info_t part;
        if (!mp_get_buffer(args[i], &part, MP_BUFFER_READ)) {
            mbedtls_sha512_free(&ctx);
            vstr_clear(&out);
            mp_raise_TypeError(MP_ERROR_TEXT("sha512 parts must be bytes-like"));
        }
        ret = mbedtls_sha512_update(&ctx, part.buf, part.len);
    }
    if (ret == 0) {
        ret = mbedtls_sha512_finish(&ctx, (unsigned char *)out.buf);
    }
    mbedtls_sha512_free(&ctx);
    if (ret != 0) {
        vstr_clear(&out);
        mp_raise_ValueError(MP_ERROR_TEXT("mbedtls sha512 error"));
    }
    return mp_obj_new_bytes_from_vstr(&out);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR(srpmath_sha512_obj, 0, srpmath_sha512);

static const mp_rom_map_elem_t srpmath_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_srpmath) },
    { MP_ROM_QSTR(MP_QSTR_pow_mod), MP_ROM_PTR(&srpmath_pow_mod_obj) },
    { MP_ROM_QSTR(MP_QSTR_sha512), MP_ROM_PTR(&srpmath_sha512_obj) },
};
static MP_DEFINE_CONST_DICT(srpmath_globals, srpmath_globals_table);

const mp_obj_module_t srpmath_user_cmodule = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&srpmath_globals,
};

MP_REGISTER_MODULE(MP_QSTR_srpmath, srpmath_user_cmodule);
