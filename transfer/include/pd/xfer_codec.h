/* KV compression on the wire: int8 and fp8 (e4m3) codes with per-block, per-head scales.
 *
 * The unit is one block of one layer, the slice a transfer segment carries:
 *
 *   raw:    (2, B, n_kv_heads, head_dim) f32                         (K then V)
 *   packed: (2, n_kv_heads) f32 scales, then (2, B, n_kv_heads, head_dim) u8 codes
 *
 * One scale per (K or V, head) covers that head's B x head_dim values: scale = max|x| /
 * 127 for int8 (x ~ code * scale, codes -127..127 two's complement) and max|x| / 448 for
 * fp8 e4m3 (x ~ e4m3(code) * scale; 448 is e4m3's largest finite value). Rounding is to
 * nearest, ties to even. A head whose values are all zero has scale 0 and codes 0.
 * Non-finite inputs are not supported (KV never holds them). Packing is about 4x smaller;
 * restoring is lossy: docs/PERFORMANCE.md has the measured effect on next-token
 * distributions. */
#ifndef PD_XFER_CODEC_H
#define PD_XFER_CODEC_H

#include "pd/kv_layout.h"
#include "pd/status.h"

#include <stddef.h>
#include <stdint.h>

typedef enum pd_xfer_codec {
    PD_XFER_CODEC_NONE = 0, /* f32 as computed */
    PD_XFER_CODEC_INT8,     /* symmetric int8, per-head scales */
    PD_XFER_CODEC_FP8       /* fp8 e4m3 (OCP), per-head scales */
} pd_xfer_codec_t;

/* Parse "off" (or "none"), "int8" or "fp8"; PD_ERR_INVALID_PARAM otherwise. */
PD_MUST_CHECK pd_status_t pd_xfer_codec_parse(const char *name, pd_xfer_codec_t *codec_p);

/* "off", "int8" or "fp8". */
const char *pd_xfer_codec_name(pd_xfer_codec_t codec);

/* Packed bytes of one block of one layer of layout l; the raw size for NONE; 0 when the
 * codec cannot pack this shape (n_kv_heads or head_dim above 1024, or zero). */
size_t pd_xfer_codec_block_bytes(pd_xfer_codec_t codec, const pd_kv_layout_t *l);

/* Pack one block-layer slice src, (2, B, n_kv_heads, head_dim) f32, into dst
 * (pd_xfer_codec_block_bytes bytes). codec must not be NONE. */
void pd_xfer_codec_pack(pd_xfer_codec_t codec, const pd_kv_layout_t *l, const float *src,
                        uint8_t *dst);

/* Restore n_blocks consecutive packed slices into f32 in place: base points at the first
 * raw slice's place, n_blocks * raw bytes long, whose last n_blocks * packed bytes hold
 * the packed slices in order (where a receiver lands a compressed message). Each slice is
 * restored before the next is read, and no write reaches packed bytes not yet read. */
void pd_xfer_codec_unpack_run(pd_xfer_codec_t codec, const pd_kv_layout_t *l, uint8_t *base,
                              size_t n_blocks);

/* Restore one packed slice src into dst (separate buffers). */
void pd_xfer_codec_unpack(pd_xfer_codec_t codec, const pd_kv_layout_t *l, const uint8_t *src,
                          float *dst);

/* fp8 e4m3 (OCP FP8: 1 sign, 4 exponent bits with bias 7, 3 mantissa bits, no infinities,
 * 0x7F/0xFF NaN): the nearest code to x, ties to even, saturating at +-448. */
uint8_t pd_fp8_e4m3_from_f32(float x);

/* The value of an e4m3 code (NaN for 0x7F and 0xFF). */
float pd_fp8_e4m3_to_f32(uint8_t code);

#endif
