// ggml block-quantized storage types as found in GGUF files, and scalar reference decoders to
// fp32. Written from the published block layouts (ggml-common.h) and the GGUF specification.
//
// Every type packs a fixed number of values into a fixed-size block of bytes. All multi-byte
// fields are little endian; "fp16" fields are IEEE half floats. The structs below are byte-exact
// images of one block (no padding, checked by static_assert), and decoders copy each block out of
// the source with memcpy, so `src` need not be aligned.
//
// Four families:
//   * legacy blocks of 32 values: one fp16 scale `d` (and for the "_1" types an fp16 offset `m`)
//     and 4, 5 or 8-bit codes; value = d * (code - zero_point) or value = d * code + m.
//   * k-quants: super-blocks of QK_K = 256 values split into sub-blocks of 16 or 32 values; each
//     sub-block has a small integer scale (and sometimes a min) which is itself multiplied by an
//     fp16 super-block scale.
//   * non-linear 4-bit (IQ4_NL, IQ4_XS): a 4-bit code indexes a fixed table of 16 int8 levels
//     (kIq4Levels), times an fp16 scale per 32 values (IQ4_NL) or a 6-bit scale per 32 values
//     times an fp16 super-block scale (IQ4_XS).
//   * FP4 (MXFP4, NVFP4): E2M1 codes with an E8M0 scale per 32 values or an unsigned E4M3 scale
//     per 16 values. ggml decodes them through doubled E2M1 levels and halved scales, which gives
//     the same products (both factors are exact powers of two apart).
//
// Value order: decoders produce values in their natural (row-major) order; the comments on each
// struct say which bits of which byte hold value number `i` of the block.
#pragma once

#include <cstdint>

namespace mpq::gguf {

inline constexpr int kLegacyBlockValues = 32;  // values per Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 block
inline constexpr int kQK_K = 256;              // values per k-quant super-block
inline constexpr int kKScaleBytes = 12;        // packed 6-bit scales+mins of Q4_K/Q5_K (and Q3_K)

// Q4_0: value i = d * (q_i - 8), q_i a 4-bit code.
// Codes 0..15 are the low nibbles of qs[0..15]; codes 16..31 the high nibbles of qs[0..15].
struct BlockQ4_0 {
  uint16_t d;       // fp16 scale
  uint8_t qs[16];   // 32 x 4-bit codes, two per byte (see above)
};
static_assert(sizeof(BlockQ4_0) == 18);

// Q4_1: value i = d * q_i + m, q_i a 4-bit code packed as in Q4_0.
struct BlockQ4_1 {
  uint16_t d;       // fp16 scale
  uint16_t m;       // fp16 offset (the block minimum)
  uint8_t qs[16];   // 32 x 4-bit codes, as in Q4_0
};
static_assert(sizeof(BlockQ4_1) == 20);

// Q5_0: value i = d * (q_i - 16), q_i a 5-bit code. The low 4 bits are packed as in Q4_0; the
// fifth bit of code i is bit i of the little-endian 32-bit word `qh`.
struct BlockQ5_0 {
  uint16_t d;       // fp16 scale
  uint8_t qh[4];    // fifth (high) bit of each of the 32 codes, bit i = code i
  uint8_t qs[16];   // low 4 bits of the 32 codes, as in Q4_0
};
static_assert(sizeof(BlockQ5_0) == 22);

// Q5_1: value i = d * q_i + m, q_i a 5-bit code packed as in Q5_0.
struct BlockQ5_1 {
  uint16_t d;       // fp16 scale
  uint16_t m;       // fp16 offset (the block minimum)
  uint8_t qh[4];    // fifth bit of each code, bit i = code i
  uint8_t qs[16];   // low 4 bits of the codes, as in Q4_0
};
static_assert(sizeof(BlockQ5_1) == 24);

// Q8_0: value i = d * qs[i].
struct BlockQ8_0 {
  uint16_t d;       // fp16 scale
  int8_t qs[32];    // signed 8-bit codes, one per value
};
static_assert(sizeof(BlockQ8_0) == 34);

// Q2_K: 16 sub-blocks of 16 values; value i = d * scale_s * q_i - dmin * min_s, s = i / 16.
// 2-bit codes: the block is two halves of 128 values, each using 32 bytes of `qs`. Within half h,
// value h*128 + j*32 + l (j = 0..3, l = 0..31) is bits [2j, 2j+1] of qs[h*32 + l].
struct BlockQ2_K {
  uint8_t scales[16];  // per sub-block: low nibble = 4-bit scale, high nibble = 4-bit min
  uint8_t qs[64];      // 256 x 2-bit codes (see above)
  uint16_t d;          // fp16 super-block scale for the sub-block scales
  uint16_t dmin;       // fp16 super-block scale for the sub-block mins
};
static_assert(sizeof(BlockQ2_K) == 84);

// Q3_K: 16 sub-blocks of 16 values; value i = d * (scale_s - 32) * (q_i - 4 * !high_i), s = i / 16.
// Low 2 bits of each code are packed as in Q2_K. The third bit of value i is bit (i / 32) of
// hmask[i % 32]; when that bit is *clear* the code is lowered by 4 (codes span -4..3).
// 6-bit scales: the low 4 bits of scale s are the low nibble of scales[s] for s < 8 and the high
// nibble of scales[s - 8] for s >= 8; the high 2 bits are bits [2*(s/4), 2*(s/4)+1] of
// scales[8 + s % 4].
struct BlockQ3_K {
  uint8_t hmask[32];   // third (high) bit of each code (see above)
  uint8_t qs[64];      // low 2 bits of each code, as in Q2_K
  uint8_t scales[12];  // 16 x 6-bit scales stored with an offset of 32 (see above)
  uint16_t d;          // fp16 super-block scale
};
static_assert(sizeof(BlockQ3_K) == 110);

// Q4_K: 8 sub-blocks of 32 values; value i = d * scale_s * q_i - dmin * min_s, s = i / 32.
// 4-bit codes: value c*64 + l (c = 0..3, l = 0..31) is the low nibble of qs[c*32 + l] and value
// c*64 + 32 + l its high nibble.
// 6-bit scales and mins (see unpack_k_scale_min): for s < 4, scale = scales[s] & 63 and
// min = scales[s + 4] & 63; for s >= 4 the low 4 bits come from the nibbles of scales[s + 4]
// (scale: low nibble, min: high nibble) and the high 2 bits from the top 2 bits of scales[s - 4]
// (scale) and scales[s] (min).
struct BlockQ4_K {
  uint16_t d;                    // fp16 super-block scale for the sub-block scales
  uint16_t dmin;                 // fp16 super-block scale for the sub-block mins
  uint8_t scales[kKScaleBytes];  // 8 x 6-bit scales and 8 x 6-bit mins (see above)
  uint8_t qs[128];               // 256 x 4-bit codes (see above)
};
static_assert(sizeof(BlockQ4_K) == 144);

// Q5_K: as Q4_K with 5-bit codes. The low 4 bits are packed as in Q4_K; the fifth bit of value i
// is bit (i / 32) of qh[i % 32].
struct BlockQ5_K {
  uint16_t d;                    // fp16 super-block scale for the sub-block scales
  uint16_t dmin;                 // fp16 super-block scale for the sub-block mins
  uint8_t scales[kKScaleBytes];  // 8 x 6-bit scales and mins, as in Q4_K
  uint8_t qh[32];                // fifth bit of each code (see above)
  uint8_t qs[128];               // low 4 bits of each code, as in Q4_K
};
static_assert(sizeof(BlockQ5_K) == 176);

// Q6_K: 16 sub-blocks of 16 values; value i = d * scales[i / 16] * (q_i - 32), q_i a 6-bit code.
// The block is two halves of 128 values. Within half h, value h*128 + j*32 + l (j = 0..3,
// l = 0..31) has its low 4 bits in ql[h*64 + (j % 2)*32 + l] (low nibble for j < 2, high nibble
// for j >= 2) and its high 2 bits in bits [2j, 2j+1] of qh[h*32 + l].
struct BlockQ6_K {
  uint8_t ql[128];    // low 4 bits of each code (see above)
  uint8_t qh[64];     // high 2 bits of each code (see above)
  int8_t scales[16];  // signed 8-bit scale per sub-block
  uint16_t d;         // fp16 super-block scale
};
static_assert(sizeof(BlockQ6_K) == 210);

// IQ4_NL: value i = d * kIq4Levels[q_i], q_i a 4-bit code packed as in Q4_0.
struct BlockIQ4_NL {
  uint16_t d;       // fp16 scale
  uint8_t qs[16];   // 32 x 4-bit level indices, as in Q4_0
};
static_assert(sizeof(BlockIQ4_NL) == 18);

// The 16 levels of IQ4_NL/IQ4_XS (ggml's kvalues_iq4nl): a non-uniform grid, denser near 0,
// where most weights are. Asymmetric (-127 .. 113), so a block picks the sign of its scale.
inline constexpr int8_t kIq4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};

// IQ4_XS: 8 sub-blocks of 32 values; value i = (d * (scale_s - 32)) * kIq4Levels[q_i],
// s = i / 32. 6-bit scales: the low 4 bits of scale s are nibble (s % 2) of scales_l[s / 2] (low
// nibble first), the high 2 bits are bits [2s, 2s+1] of the little-endian 16-bit `scales_h`.
// Codes: sub-block s uses qs[16s .. 16s+15], packed like a Q4_0 block (value 32s + l in the low
// nibble of qs[16s + l] for l < 16, in the high nibble of qs[16s + l - 16] for l >= 16).
struct BlockIQ4_XS {
  uint16_t d;           // fp16 super-block scale
  uint16_t scales_h;    // high 2 bits of the 8 sub-block scales (see above)
  uint8_t scales_l[4];  // low 4 bits of the 8 sub-block scales (see above)
  uint8_t qs[128];      // 256 x 4-bit level indices (see above)
};
static_assert(sizeof(BlockIQ4_XS) == 136);

// MXFP4 (ggml): value i = e2m1(q_i) * 2^(e - 127), codes packed as in Q4_0. ggml computes it as
// (2 e2m1(q_i)) * 2^(e - 128), an integer level times half the scale, which is the same number
// (both products are exact) for every e but 0xFF: OCP MX says NaN, ggml has no NaN scale and
// gives (2 e2m1) * 2^127 (infinite for |e2m1| >= 1). The codes' sign bit on a zero level gives
// +0 in ggml (its level table has no -0).
struct BlockMXFP4 {
  uint8_t e;        // E8M0 scale
  uint8_t qs[16];   // 32 x E2M1 codes (bit 3 = sign), as in Q4_0
};
static_assert(sizeof(BlockMXFP4) == 17);

// NVFP4 (ggml): 4 sub-blocks of 16 values; value i = e2m1(q_i) * ue4m3(d[s]), s = i / 16,
// computed (like MXFP4) as a doubled level times half the scale, exact either way.
// ue4m3 = an E4M3 byte read without its sign bit (bit 7 ignored), except that 0x7F (the E4M3
// NaN pattern) decodes as 0; 0xFF is therefore 480. Codes: sub-block s uses qs[8s .. 8s+7],
// value 16s + l in the low nibble of qs[8s + l] for l < 8, in the high nibble of qs[8s + l - 8]
// for l >= 8. A tensor-wide fp32 factor, when the model has one, is a separate GGUF tensor
// ("<name>.scale") that llama.cpp multiplies the product by; it is not part of the block.
struct BlockNVFP4 {
  uint8_t d[4];     // UE4M3 scales of the 4 sub-blocks
  uint8_t qs[32];   // 64 x E2M1 codes (see above)
};
static_assert(sizeof(BlockNVFP4) == 36);

// Scalar reference decoders: `n_values` must be a whole number of blocks (checked by callers:
// dequantize_to_f32 in format/dtype.h). `src` may be unaligned.
void dequantize_q4_0(const uint8_t* src, float* dst, int64_t n_values);
void dequantize_q4_1(const uint8_t* src, float* dst, int64_t n_values);
void dequantize_q5_0(const uint8_t* src, float* dst, int64_t n_values);
void dequantize_q5_1(const uint8_t* src, float* dst, int64_t n_values);
void dequantize_q8_0(const uint8_t* src, float* dst, int64_t n_values);
void dequantize_q2_k(const uint8_t* src, float* dst, int64_t n_values);
void dequantize_q3_k(const uint8_t* src, float* dst, int64_t n_values);
void dequantize_q4_k(const uint8_t* src, float* dst, int64_t n_values);
void dequantize_q5_k(const uint8_t* src, float* dst, int64_t n_values);
void dequantize_q6_k(const uint8_t* src, float* dst, int64_t n_values);
void dequantize_iq4_nl(const uint8_t* src, float* dst, int64_t n_values);
void dequantize_iq4_xs(const uint8_t* src, float* dst, int64_t n_values);
void dequantize_mxfp4(const uint8_t* src, float* dst, int64_t n_values);
void dequantize_nvfp4(const uint8_t* src, float* dst, int64_t n_values);

// Values per block of MXFP4 / NVFP4.
inline constexpr int kMxfp4BlockValues = 32;
inline constexpr int kNvfp4BlockValues = 64;

// The 6-bit scale and min of sub-block `s` (0..7) of a Q4_K/Q5_K block.
struct KScaleMin {
  uint8_t scale;  // 0..63
  uint8_t min;    // 0..63
};
KScaleMin unpack_k_scale_min(const uint8_t (&scales)[kKScaleBytes], int s);

}  // namespace mpq::gguf
