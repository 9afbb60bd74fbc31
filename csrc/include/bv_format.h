/* bv_format.h - the portable on-disk and in-memory layouts of the bitvoice
 * ternary engine. Every layout that a kernel reads is defined here, once, with
 * static_asserts, so that packing never depends on the CPU that packed it:
 * bytes are written in a fixed order and all multi-byte fields of the bundle
 * header are little-endian.
 *
 * Ternary matrix W[rows][cols], values in {-1, 0, +1}:
 *   2.0 bits per weight. cols is padded with zero weights to a multiple of
 *   BV_QK (128). Each row is nb = cols_padded / BV_QK blocks of BV_BLOCK_BYTES
 *   (32) bytes; rows are stored one after another (row r starts at byte
 *   r * nb * 32). Within a block, byte j (0..31) holds the codes of the four
 *   weights j, j+32, j+64, j+96 in bit pairs [1:0], [3:2], [5:4], [7:6].
 *   A code is w + 1, so 0 -> -1, 1 -> 0, 2 -> +1 (3 is never written).
 *   Why this order: one 32-byte load plus shift-and-mask yields four vectors
 *   of 32 *consecutive* weights, which line up with 32 consecutive int8
 *   activations, on AVX2 and AVX-512 alike, and a scalar loop reads it simply.
 *
 * int8 matrix (quantized LM head, unembed_quant="int8"):
 *   8 bits per weight, row-major, cols padded with zeros to BV_QK, one float
 *   scale per row (value = q * scale).
 *
 * int4 matrix (unembed_quant="int4"):
 *   4 bits per weight, cols padded to BV_QK. Each 128-column group is 64 bytes;
 *   byte j holds column j in the low nibble and column j+64 in the high
 *   nibble, as the code v + 8 for v in [-7, 7]. One float scale per row.
 *
 * Ternary T1 (in memory only, never in a file; 1.6 bits per weight):
 *   the decode-speed layout a kernel path may ask for (bv_kernels.prefer_t1);
 *   the loader repacks the file's 2-bit rows into it. cols is padded to a
 *   multiple of BV_T1_QK (320); each row is nb1 = cols_padded / 320 blocks of
 *   BV_T1_BLOCK_BYTES (64) bytes. Byte j of a block holds the codes c_i = w + 1
 *   of the five weights j + 64*i (i = 0..4) as the base-3 number
 *   v = c_0*81 + c_1*27 + c_2*9 + c_3*3 + c_4, stored as ceil(v * 256 / 243).
 *   Why: digit i comes back with two multiplies and a shift,
 *   c_i = (((byte * 3^i) mod 256) * 3) >> 8, so a kernel unpacks 64 weights per
 *   digit with byte-wise arithmetic (or a byte table lookup), and a decode
 *   step streams 20% fewer bytes than the 2-bit layout.
 *
 * Activations are int8, per token, absmax-scaled (BitNet b1.58), padded with
 * zeros to the padded column count of the layout that reads them.
 */
#ifndef BV_FORMAT_H
#define BV_FORMAT_H

#include <assert.h>
#include <stdint.h>

#define BV_QK 128                       /* weights per block (a row is padded to this) */
#define BV_BLOCK_BYTES (BV_QK * 2 / 8)  /* 2 bits per ternary weight -> 32 bytes */
#define BV_I4_GROUP_BYTES (BV_QK / 2)   /* 4 bits per int4 weight -> 64 bytes */

static_assert(BV_BLOCK_BYTES == 32, "a ternary block is 128 weights in 32 bytes (2.0 bits/weight)");
static_assert(BV_I4_GROUP_BYTES == 64, "an int4 group is 128 weights in 64 bytes (4.0 bits/weight)");
static_assert(BV_QK % 64 == 0, "SIMD kernels assume 64-byte multiples per row");

#define BV_T1_QK 320          /* weights per T1 block */
#define BV_T1_BLOCK_BYTES 64  /* 5 weights per byte -> 1.6 bits/weight */
static_assert(BV_T1_QK == 5 * BV_T1_BLOCK_BYTES, "a T1 block is 64 bytes of 5 trits each");

static inline int bv_pad_cols(int cols) { return (cols + BV_QK - 1) / BV_QK * BV_QK; }
static inline int bv_blocks(int cols) { return bv_pad_cols(cols) / BV_QK; }
static inline int bv_t1_pad_cols(int cols) { return (cols + BV_T1_QK - 1) / BV_T1_QK * BV_T1_QK; }
static inline int bv_t1_blocks(int cols) { return bv_t1_pad_cols(cols) / BV_T1_QK; }

/* In-memory LoRA factors under lora_quant="int4" (never in a file): a row of
 * `cols` signed codes -7..7, two per byte, the even column in the low nibble,
 * each stored as code + 8; an odd last column leaves the high nibble 8 (0).
 * 4.0 bits/weight plus one float step per row. */
#define BV_LORA_I4_ROW_BYTES(cols) (((cols) + 1) / 2)
#define BV_LORA_I4_ZERO 8
static_assert(BV_LORA_I4_ROW_BYTES(7) == 4, "int4 LoRA rows round up to whole bytes");

/* ---- bundle file (model.bvm) ---------------------------------------------
 * [header: bv_file_header, 64 bytes]
 * [tensor table: n_tensors * bv_tensor_entry]
 * [data: each tensor at its offset, 64-byte aligned]
 * The JSON config lives beside the binary in config.json; the header carries
 * the sizes the loader checks the table against. */
#define BV_MAGIC 0x4d564254u /* "TBVM" read as little-endian bytes 'T','B','V','M' */
#define BV_VERSION 1u
#define BV_ALIGN 64u
#define BV_NAME_LEN 48

enum bv_dtype {
    BV_DTYPE_F32 = 0,     /* little-endian IEEE float */
    BV_DTYPE_F16 = 1,     /* little-endian IEEE half */
    BV_DTYPE_TERNARY = 2, /* the 2-bit layout above; scale in the entry */
    BV_DTYPE_COUNT
};

typedef struct {
    uint32_t magic;      /* BV_MAGIC */
    uint32_t version;    /* BV_VERSION */
    uint32_t n_tensors;  /* entries in the tensor table */
    uint32_t header_size;/* sizeof(bv_file_header) */
    uint64_t file_size;  /* total bytes, checked against the real size */
    uint32_t hidden, n_layers, n_heads, n_kv_heads, ffn, vocab, max_ctx, head_dim;
    float rope_theta;    /* RoPE base */
    float rms_eps;       /* RMSNorm epsilon */
} bv_file_header;
static_assert(sizeof(bv_file_header) == 64, "header is 64 bytes");

typedef struct {
    char name[BV_NAME_LEN]; /* NUL-terminated, e.g. "layers.3.q_proj" */
    uint32_t dtype;         /* enum bv_dtype */
    uint32_t rows, cols;    /* logical shape (cols unpadded); 1-D tensors have rows = 1 */
    float scale;            /* ternary: W = T * scale; otherwise 1 */
    uint64_t offset;        /* from the start of the file, BV_ALIGN-aligned */
    uint64_t nbytes;        /* bytes stored */
} bv_tensor_entry;
static_assert(sizeof(bv_tensor_entry) == 80, "tensor entry is 80 bytes");

#endif
