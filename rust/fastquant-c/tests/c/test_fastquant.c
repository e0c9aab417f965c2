/*
 * The C ABI from C: compiled with gcc against include/fastquant.h and the static library by
 * tests/c_program.rs, which passes a scratch directory and a GGUF file it wrote with the Rust
 * writer:  test_fastquant TMPDIR GGUF_PATH
 * The GGUF holds general.name = "cabi-test", test.answer = 42 (UINT32), test.pi = 3.25 (FLOAT32)
 * and tensor "w": Q8_0, dims {64, 4}, quantized from weight_value() below. Nothing is written
 * outside TMPDIR.
 */
#include "fastquant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fprintf(stderr, "\n");                                                        \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

#define OK(call)                                                                          \
    do {                                                                                  \
        FqStatus st_ = (call);                                                            \
        CHECK(st_ == FQ_STATUS_OK, "status %d: %s", (int)st_, fq_last_error());           \
    } while (0)

/* The call fails with `status` and a message containing `part`. */
#define EXPECT_ERROR(call, status, part)                                                  \
    do {                                                                                  \
        FqStatus st_ = (call);                                                            \
        const char *msg_ = fq_last_error();                                               \
        CHECK(st_ == (status), "status %d, expected %d (%s)", (int)st_, (int)(status), msg_); \
        CHECK(strstr(msg_, (part)) != NULL, "message '%s' lacks '%s'", msg_, (part));     \
    } while (0)

static uint32_t rng_state = 12345u;

/* Uniform in [-1, 1), exactly representable, so every platform makes the same inputs. */
static float next_uniform(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) * (2.0f / 16777216.0f) - 1.0f;
}

static float *random_floats(size_t n) {
    float *x = malloc(n * sizeof *x);
    CHECK(x != NULL, "out of memory");
    for (size_t i = 0; i < n; i++) x[i] = next_uniform();
    return x;
}

/* The values the Rust side quantized into the GGUF tensor "w" (exact in binary). */
static float weight_value(size_t i) { return (float)((int)(i % 17) - 8) / 4.0f; }

static void test_config_and_types(void) {
    CHECK(strlen(fq_version()) > 0, "empty version");
    int32_t detected = fq_simd_detected(), active = -2;
    CHECK(fq_simd_level_name(detected) != NULL, "detected level %d has no name", detected);
    OK(fq_simd_active(&active));
    CHECK(active >= FQ_SIMD_SCALAR && active <= detected, "active level %d", active);
    EXPECT_ERROR(fq_simd_set(17), FQ_STATUS_SIMD, "unknown SIMD level 17");
    EXPECT_ERROR(fq_simd_active(NULL), FQ_STATUS_NULL_POINTER, "out_level is NULL");

    OK(fq_set_num_threads(2));
    CHECK(fq_num_threads() == 2, "threads %zu", fq_num_threads());
    EXPECT_ERROR(fq_set_num_threads(0), FQ_STATUS_INVALID_ARGUMENT, "thread");

    CHECK(fq_type_count() > 20, "type table has %zu rows", fq_type_count());
    FqTypeInfo info;
    for (size_t i = 0; i < fq_type_count(); i++) {
        OK(fq_type_info_at(i, &info));
        FqTypeInfo same;
        OK(fq_type_info(info.id, &same));
        CHECK(strcmp(same.name, info.name) == 0, "%s vs %s", same.name, info.name);
    }
    EXPECT_ERROR(fq_type_info_at(fq_type_count(), &info), FQ_STATUS_OUT_OF_RANGE, "out of range");
    OK(fq_type_info(FQ_TYPE_Q8_0, &info));
    CHECK(strcmp(info.name, "Q8_0") == 0 && info.block_elems == 32 && info.block_bytes == 34 && info.can_quantize,
          "Q8_0 facts: %s %zu %zu", info.name, info.block_elems, info.block_bytes);
    uint32_t id = 0;
    OK(fq_type_from_name("q4_k", &id));
    CHECK(id == FQ_TYPE_Q4_K, "q4_k -> %u", id);
    EXPECT_ERROR(fq_type_from_name("Q9_9", &id), FQ_STATUS_UNKNOWN_TYPE, "'Q9_9'");
    EXPECT_ERROR(fq_type_info(4, &info), FQ_STATUS_UNKNOWN_TYPE, "unknown ggml type id 4");
    size_t bytes = 0;
    OK(fq_type_row_bytes(FQ_TYPE_Q4_K, 512, &bytes));
    CHECK(bytes == 288, "Q4_K row of 512: %zu bytes", bytes);
    EXPECT_ERROR(fq_type_row_bytes(FQ_TYPE_Q4_K, 100, &bytes), FQ_STATUS_SIZE, "not a multiple of the block size 256");
    printf("ok config and types (simd %s, %zu types)\n", fq_simd_level_name(detected), fq_type_count());
}

/* Quantizes rows x cols floats to `type`, dequantizes, and checks the error against `tol` (relative
 * to the largest magnitude); with `imatrix` too. Returns the quantized bytes (caller frees). */
static uint8_t *round_trip(uint32_t type, const float *x, size_t rows, size_t cols, const float *imatrix, float tol,
                           size_t *out_bytes) {
    size_t row_bytes = 0;
    OK(fq_type_row_bytes(type, cols, &row_bytes));
    size_t n = rows * cols, nbytes = rows * row_bytes;
    uint8_t *q = malloc(nbytes);
    float *y = malloc(n * sizeof *y);
    CHECK(q && y, "out of memory");
    OK(fq_quantize(type, FQ_TYPE_F32, x, n, cols, imatrix, q, nbytes, 0));
    OK(fq_dequantize(type, q, nbytes, cols, FQ_TYPE_F32, y, n));
    CHECK(fq_last_error()[0] == '\0', "message after success: %s", fq_last_error());
    float max_err = 0.0f;
    for (size_t i = 0; i < n; i++) max_err = fmaxf(max_err, fabsf(x[i] - y[i]));
    CHECK(max_err <= tol, "type %u: max error %g > %g", type, max_err, tol);
    free(y);
    *out_bytes = nbytes;
    return q;
}

static void test_quantize(void) {
    const size_t rows = 4, cols = 512, n = rows * cols;
    float *x = random_floats(n);
    size_t nbytes;
    free(round_trip(FQ_TYPE_Q8_0, x, rows, cols, NULL, 1.0f / 127.0f, &nbytes));
    free(round_trip(FQ_TYPE_Q6_K, x, rows, cols, NULL, 0.05f, &nbytes));
    float *imatrix = malloc(cols * sizeof *imatrix);
    for (size_t i = 0; i < cols; i++) imatrix[i] = 0.5f + (float)(i % 7);
    free(round_trip(FQ_TYPE_Q4_K, x, rows, cols, imatrix, 0.25f, &nbytes));

    /* Every SIMD level this CPU has writes the scalar reference's bytes. */
    OK(fq_simd_set(FQ_SIMD_SCALAR));
    uint8_t *reference = round_trip(FQ_TYPE_Q4_K, x, rows, cols, NULL, 0.25f, &nbytes);
    for (int32_t level = FQ_SIMD_AVX2; level <= fq_simd_detected(); level++) {
        OK(fq_simd_set(level));
        uint8_t *q = round_trip(FQ_TYPE_Q4_K, x, rows, cols, NULL, 0.25f, &nbytes);
        CHECK(memcmp(q, reference, nbytes) == 0, "Q4_K bytes at %s differ from scalar", fq_simd_level_name(level));
        free(q);
    }
    OK(fq_simd_set(FQ_SIMD_DEFAULT));

    /* F16 input (bit patterns) quantizes like the same values in f32: 0.5 = 0x3800, -2 = 0xC000. */
    uint16_t half[32];
    float same[32];
    for (int i = 0; i < 32; i++) {
        half[i] = (i % 2) ? 0x3800 : 0xC000;
        same[i] = (i % 2) ? 0.5f : -2.0f;
    }
    uint8_t from_half[34], from_float[34];
    OK(fq_quantize(FQ_TYPE_Q8_0, FQ_TYPE_F16, half, 32, 32, NULL, from_half, sizeof from_half, 0));
    OK(fq_quantize(FQ_TYPE_Q8_0, FQ_TYPE_F32, same, 32, 32, NULL, from_float, sizeof from_float, 0));
    CHECK(memcmp(from_half, from_float, 34) == 0, "F16 and F32 input give different Q8_0 bytes");

    /* Errors: the status and a message that says what and where; nothing is written. */
    uint8_t *dst = malloc(n);
    EXPECT_ERROR(fq_quantize(FQ_TYPE_Q8_0, FQ_TYPE_F32, x, n, cols, NULL, dst, 100, 0), FQ_STATUS_SIZE,
                 "output bytes: expected 2176, got 100");
    EXPECT_ERROR(fq_quantize(FQ_TYPE_Q8_0, FQ_TYPE_F32, NULL, n, cols, NULL, dst, 2176, 0), FQ_STATUS_NULL_POINTER,
                 "src is NULL");
    EXPECT_ERROR(fq_quantize(FQ_TYPE_Q8_0, FQ_TYPE_F32, x, 400, 100, NULL, dst, 2176, 0), FQ_STATUS_SIZE,
                 "not a multiple of the block size 32");
    EXPECT_ERROR(fq_quantize(FQ_TYPE_Q8_0, FQ_TYPE_Q4_0, x, n, cols, NULL, dst, 2176, 0), FQ_STATUS_UNSUPPORTED,
                 "not a float type");
    EXPECT_ERROR(fq_quantize(16 /* IQ2_XXS */, FQ_TYPE_F32, x, n, 256, NULL, dst, n, 0), FQ_STATUS_UNSUPPORTED,
                 "IQ2_XXS: quantization is not implemented");
    EXPECT_ERROR(fq_quantize(FQ_TYPE_Q8_0, FQ_TYPE_F32, (const char *)x + 1, 32, 32, NULL, dst, 34, 0),
                 FQ_STATUS_INVALID_ARGUMENT, "src is not aligned to 4 bytes");
    EXPECT_ERROR(fq_quantize(FQ_TYPE_Q8_0, FQ_TYPE_F32, x, 32, 32, NULL, (uint8_t *)x + 8, 34, 0),
                 FQ_STATUS_INVALID_ARGUMENT, "overlaps src");
    float with_nan[64];
    memcpy(with_nan, x, sizeof with_nan);
    with_nan[37] = NAN;
    EXPECT_ERROR(fq_quantize(FQ_TYPE_Q8_0, FQ_TYPE_F32, with_nan, 64, 32, NULL, dst, 68, 0), FQ_STATUS_NON_FINITE,
                 "at flat index 37");
    OK(fq_quantize(FQ_TYPE_Q8_0, FQ_TYPE_F32, with_nan, 64, 32, NULL, dst, 68, FQ_QUANTIZE_ALLOW_NON_FINITE));
    EXPECT_ERROR(fq_dequantize(FQ_TYPE_Q8_0, dst, 67, 32, FQ_TYPE_F32, with_nan, 64), FQ_STATUS_SIZE,
                 "input bytes: expected 68, got 67");
    free(dst);
    free(imatrix);
    free(x);
    printf("ok quantize/dequantize and error paths\n");
}

/* out[i][j] = sum_c x[i][c] * w[j][c] in double. */
static void naive_matmul(const float *x, const float *w, size_t m, size_t n, size_t k, double *out, double *bound) {
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0.0, a = 0.0;
            for (size_t c = 0; c < k; c++) {
                s += (double)x[i * k + c] * w[j * k + c];
                a += fabs((double)x[i * k + c] * w[j * k + c]);
            }
            out[i * n + j] = s;
            bound[i * n + j] = a;
        }
}

static void test_matmul(void) {
    const size_t n = 24, k = 512;
    const uint32_t types[] = {FQ_TYPE_Q8_0, FQ_TYPE_Q4_0, FQ_TYPE_Q4_K, FQ_TYPE_Q6_K};
    const size_t ms[] = {1, 3, 19}; /* GEMV (up to 8 rows) and GEMM paths */
    float *w = random_floats(n * k);
    float *wd = malloc(n * k * sizeof *wd);
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        size_t row_bytes;
        OK(fq_type_row_bytes(types[t], k, &row_bytes));
        uint8_t *wq = malloc(n * row_bytes);
        OK(fq_quantize(types[t], FQ_TYPE_F32, w, n * k, k, NULL, wq, n * row_bytes, 0));
        OK(fq_dequantize(types[t], wq, n * row_bytes, k, FQ_TYPE_F32, wd, n * k));
        for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++) {
            size_t m = ms[mi];
            float *x = random_floats(m * k), *out = malloc(m * n * sizeof *out);
            double *ref = malloc(m * n * sizeof *ref), *bound = malloc(m * n * sizeof *bound);
            OK(fq_matmul(types[t], wq, n * row_bytes, n, k, x, m * k, out, m * n));
            naive_matmul(x, wd, m, n, k, ref, bound);
            /* Activations are quantized to 8 bits: error well under 1% of sum |x w|. */
            for (size_t i = 0; i < m * n; i++)
                CHECK(fabs(out[i] - ref[i]) <= 0.01 * bound[i] + 1e-5, "type %u m %zu [%zu]: %g vs %g", types[t], m,
                      i, out[i], ref[i]);
            if (m == 3) {
                EXPECT_ERROR(fq_matmul(types[t], wq, n * row_bytes, n, k, x, m * k, out, m * n - 1), FQ_STATUS_SIZE,
                             "output elements");
                EXPECT_ERROR(fq_matmul(types[t], wq, n * row_bytes - 1, n, k, x, m * k, out, m * n), FQ_STATUS_SIZE,
                             "weight bytes");
            }
            free(x);
            free(out);
            free(ref);
            free(bound);
        }
        free(wq);
    }
    free(w);
    free(wd);
    printf("ok matmul (Q8_0 Q4_0 Q4_K Q6_K, m = 1, 3, 19)\n");
}

/* Causal attention with grouped heads in double: q/out [B,Hq,Nq,D], k/v [B,Hkv,Nk,D]. */
static void naive_attention(const FqAttentionShape *s, const float *q, const float *k, const float *v, int causal,
                            float scale, double *out, double *lse) {
    size_t group = s->q_heads / s->kv_heads, d = s->head_dim;
    double *p = malloc(s->n_keys * sizeof *p);
    for (size_t b = 0; b < s->batch; b++)
        for (size_t h = 0; h < s->q_heads; h++)
            for (size_t i = 0; i < s->n_queries; i++) {
                const float *qi = q + ((b * s->q_heads + h) * s->n_queries + i) * d;
                const float *kh = k + (b * s->kv_heads + h / group) * s->n_keys * d;
                const float *vh = v + (b * s->kv_heads + h / group) * s->n_keys * d;
                size_t visible = causal ? i + 1 + (s->n_keys - s->n_queries) : s->n_keys;
                double mx = -INFINITY, sum = 0.0;
                for (size_t j = 0; j < visible; j++) {
                    double dot = 0.0;
                    for (size_t c = 0; c < d; c++) dot += (double)qi[c] * kh[j * d + c];
                    p[j] = dot * scale;
                    mx = fmax(mx, p[j]);
                }
                for (size_t j = 0; j < visible; j++) sum += (p[j] = exp(p[j] - mx));
                if (lse) lse[(b * s->q_heads + h) * s->n_queries + i] = mx + log(sum);
                double *o = out + ((b * s->q_heads + h) * s->n_queries + i) * d;
                for (size_t c = 0; c < d; c++) {
                    double acc = 0.0;
                    for (size_t j = 0; j < visible; j++) acc += p[j] * vh[j * d + c];
                    o[c] = acc / sum;
                }
            }
    free(p);
}

static void test_attention(void) {
    FqAttentionShape s = {.batch = 2, .q_heads = 4, .kv_heads = 2, .n_queries = 5, .n_keys = 37, .head_dim = 64};
    size_t q_len = s.batch * s.q_heads * s.n_queries * s.head_dim;
    size_t kv_rows = s.batch * s.kv_heads * s.n_keys, kv_len = kv_rows * s.head_dim;
    float *q = random_floats(q_len), *k = random_floats(kv_len), *v = random_floats(kv_len);
    float *out = malloc(q_len * sizeof *out), *lse = malloc(s.batch * s.q_heads * s.n_queries * sizeof *lse);
    CHECK(q && k && v && out && lse, "out of memory");
    size_t lse_len = s.batch * s.q_heads * s.n_queries;
    double *ref = malloc(q_len * sizeof *ref), *ref_lse = malloc(lse_len * sizeof *ref_lse);
    FqAttentionOptions opts = {.causal = 1, .scale = 0.0f}; /* scale 0: 1/sqrt(64) */

    OK(fq_attention(&s, q, q_len, FQ_TYPE_F32, k, kv_len * 4, v, kv_len * 4, &opts, out, q_len, lse, lse_len));
    naive_attention(&s, q, k, v, 1, 0.125f, ref, ref_lse);
    for (size_t i = 0; i < q_len; i++) CHECK(fabs(out[i] - ref[i]) < 1e-4, "f32 KV [%zu]: %g vs %g", i, out[i], ref[i]);
    for (size_t i = 0; i < lse_len; i++) CHECK(fabs(lse[i] - ref_lse[i]) < 1e-4, "lse [%zu]: %g vs %g", i, lse[i], ref_lse[i]);

    /* Non-causal with an explicit scale; the Q8_0 call below passes NULL options (the defaults). */
    FqAttentionOptions plain = {.causal = 0, .scale = 0.3f};
    OK(fq_attention(&s, q, q_len, FQ_TYPE_F32, k, kv_len * 4, v, kv_len * 4, &plain, out, q_len, NULL, 0));
    naive_attention(&s, q, k, v, 0, 0.3f, ref, NULL);
    for (size_t i = 0; i < q_len; i++) CHECK(fabs(out[i] - ref[i]) < 1e-4, "scale 0.3 [%zu]", i);

    /* A Q8_0 KV cache: the same as attending to its dequantized values. */
    size_t row_bytes;
    OK(fq_type_row_bytes(FQ_TYPE_Q8_0, s.head_dim, &row_bytes));
    size_t kv_bytes = kv_rows * row_bytes;
    uint8_t *kq = malloc(kv_bytes), *vq = malloc(kv_bytes);
    float *kd = malloc(kv_len * sizeof *kd), *vd = malloc(kv_len * sizeof *vd);
    OK(fq_quantize(FQ_TYPE_Q8_0, FQ_TYPE_F32, k, kv_len, s.head_dim, NULL, kq, kv_bytes, 0));
    OK(fq_quantize(FQ_TYPE_Q8_0, FQ_TYPE_F32, v, kv_len, s.head_dim, NULL, vq, kv_bytes, 0));
    OK(fq_dequantize(FQ_TYPE_Q8_0, kq, kv_bytes, s.head_dim, FQ_TYPE_F32, kd, kv_len));
    OK(fq_dequantize(FQ_TYPE_Q8_0, vq, kv_bytes, s.head_dim, FQ_TYPE_F32, vd, kv_len));
    OK(fq_attention(&s, q, q_len, FQ_TYPE_Q8_0, kq, kv_bytes, vq, kv_bytes, NULL, out, q_len, NULL, 0));
    /* With Q8_0 keys and few query rows per kv head (decode), the queries are scaled and rounded to
     * Q8_0 once and q.k runs as int8 dots, as ggml does: the exact reference attends with those
     * rounded queries at scale 1. */
    size_t q_bytes = (q_len / s.head_dim) * row_bytes;
    float *qs = malloc(q_len * sizeof *qs);
    uint8_t *qq = malloc(q_bytes);
    CHECK(kq && vq && kd && vd && qs && qq, "out of memory");
    for (size_t i = 0; i < q_len; i++) qs[i] = q[i] * 0.125f;
    OK(fq_quantize(FQ_TYPE_Q8_0, FQ_TYPE_F32, qs, q_len, s.head_dim, NULL, qq, q_bytes, 0));
    OK(fq_dequantize(FQ_TYPE_Q8_0, qq, q_bytes, s.head_dim, FQ_TYPE_F32, qs, q_len));
    naive_attention(&s, qs, kd, vd, 0, 1.0f, ref, NULL);
    for (size_t i = 0; i < q_len; i++) CHECK(fabs(out[i] - ref[i]) < 1e-4, "Q8_0 KV [%zu]: %g vs %g", i, out[i], ref[i]);
    free(qs);
    free(qq);

    EXPECT_ERROR(fq_attention(&s, q, q_len - 1, FQ_TYPE_F32, k, kv_len * 4, v, kv_len * 4, NULL, out, q_len, NULL, 0),
                 FQ_STATUS_SIZE, "query elements");
    EXPECT_ERROR(fq_attention(NULL, q, q_len, FQ_TYPE_F32, k, kv_len * 4, v, kv_len * 4, NULL, out, q_len, NULL, 0),
                 FQ_STATUS_NULL_POINTER, "shape is NULL");
    EXPECT_ERROR(fq_attention(&s, q, q_len, FQ_TYPE_F32, k, kv_len * 4, v, kv_len * 4, NULL, k, q_len, NULL, 0),
                 FQ_STATUS_INVALID_ARGUMENT, "overlaps k");
    free(q), free(k), free(v), free(out), free(lse), free(ref), free(ref_lse), free(kq), free(vq), free(kd), free(vd);
    printf("ok attention (causal f32 KV + log-sum-exp, GQA, Q8_0 KV)\n");
}

static void test_gguf(const char *tmpdir, const char *path) {
    FqGguf *g = NULL;
    OK(fq_gguf_open(path, &g));
    size_t count = 0, index = 0, len = 0;
    OK(fq_gguf_metadata_count(g, &count));
    CHECK(count == 3, "%zu metadata pairs", count);
    const char *key = NULL, *str = NULL;
    OK(fq_gguf_metadata_key(g, 0, &key));
    CHECK(strcmp(key, "general.name") == 0, "first key %s", key);
    OK(fq_gguf_metadata_find(g, "general.name", &index));
    OK(fq_gguf_metadata_string(g, index, &str, &len));
    CHECK(strcmp(str, "cabi-test") == 0 && len == 9, "general.name = %s (%zu)", str, len);
    int64_t answer = 0;
    uint32_t vtype = 99;
    OK(fq_gguf_metadata_find(g, "test.answer", &index));
    OK(fq_gguf_metadata_type(g, index, &vtype));
    OK(fq_gguf_metadata_int(g, index, &answer));
    CHECK(vtype == 4 && answer == 42, "test.answer: type %u value %lld", vtype, (long long)answer);
    EXPECT_ERROR(fq_gguf_metadata_string(g, index, &str, NULL), FQ_STATUS_WRONG_VALUE_TYPE,
                 "metadata 'test.answer' is UINT32, not a string");
    double pi = 0.0;
    OK(fq_gguf_metadata_find(g, "test.pi", &index));
    OK(fq_gguf_metadata_float(g, index, &pi));
    CHECK(pi == 3.25, "test.pi = %g", pi);
    EXPECT_ERROR(fq_gguf_metadata_find(g, "missing.key", &index), FQ_STATUS_NOT_FOUND, "'missing.key'");
    EXPECT_ERROR(fq_gguf_metadata_key(g, 3, &key), FQ_STATUS_OUT_OF_RANGE, "metadata index 3");

    OK(fq_gguf_tensor_count(g, &count));
    CHECK(count == 1, "%zu tensors", count);
    OK(fq_gguf_tensor_find(g, "w", &index));
    FqTensorInfo info;
    OK(fq_gguf_tensor_info(g, index, &info));
    CHECK(strcmp(info.name, "w") == 0 && info.type_id == FQ_TYPE_Q8_0 && info.n_dims == 2 && info.dims[0] == 64 &&
              info.dims[1] == 4 && info.size == 4 * 68,
          "tensor info %s type %u dims %u [%llu, %llu] size %llu", info.name, info.type_id, info.n_dims,
          (unsigned long long)info.dims[0], (unsigned long long)info.dims[1], (unsigned long long)info.size);
    const uint8_t *data = NULL;
    size_t nbytes = 0;
    OK(fq_gguf_tensor_data(g, index, &data, &nbytes));
    CHECK(nbytes == info.size, "%zu data bytes", nbytes);

    /* The file's bytes are what quantizing the same values here gives. */
    float w[256];
    uint8_t mine[4 * 68];
    for (size_t i = 0; i < 256; i++) w[i] = weight_value(i);
    OK(fq_quantize(FQ_TYPE_Q8_0, FQ_TYPE_F32, w, 256, 64, NULL, mine, sizeof mine, 0));
    CHECK(memcmp(mine, data, nbytes) == 0, "GGUF tensor bytes differ from fq_quantize's");
    /* And the mapped bytes feed matmul directly: out = x @ w^T with x = ones. */
    float ones[64], out[4];
    for (int i = 0; i < 64; i++) ones[i] = 1.0f;
    OK(fq_matmul(info.type_id, data, nbytes, 4, 64, ones, 64, out, 4));
    for (size_t r = 0; r < 4; r++) {
        double sum = 0.0;
        for (size_t c = 0; c < 64; c++) sum += weight_value(r * 64 + c);
        CHECK(fabs(out[r] - sum) < 0.05, "row %zu: %g vs %g", r, out[r], sum);
    }
    EXPECT_ERROR(fq_gguf_tensor_info(g, 1, &info), FQ_STATUS_OUT_OF_RANGE, "tensor index 1");
    EXPECT_ERROR(fq_gguf_tensor_find(g, "nope", &index), FQ_STATUS_NOT_FOUND, "no tensor named 'nope'");
    fq_gguf_free(g);
    fq_gguf_free(NULL);

    /* A missing file and a file that is not GGUF: errors that name the path. */
    char missing[4096], garbage[4096];
    snprintf(missing, sizeof missing, "%s/missing.gguf", tmpdir);
    snprintf(garbage, sizeof garbage, "%s/garbage.gguf", tmpdir);
    g = (FqGguf *)1;
    EXPECT_ERROR(fq_gguf_open(missing, &g), FQ_STATUS_IO, "missing.gguf");
    CHECK(g == NULL, "handle not cleared on error");
    FILE *f = fopen(garbage, "wb");
    CHECK(f != NULL, "cannot create %s", garbage);
    fputs("this is not a GGUF file at all, just some bytes", f);
    fclose(f);
    EXPECT_ERROR(fq_gguf_open(garbage, &g), FQ_STATUS_GGUF, "garbage.gguf");
    EXPECT_ERROR(fq_gguf_metadata_count(NULL, &count), FQ_STATUS_NULL_POINTER, "gguf handle is NULL");
    printf("ok gguf (metadata, tensor info, mapped data into matmul, bad files)\n");
}

/* Writes TMPDIR/written.gguf with every kind of metadata and two tensors, reads it back with the
 * C reader (tests/c_program.rs then checks the array values with the Rust reader), and checks
 * that failures and abandoned writers leave nothing behind. */
static void test_gguf_writer(const char *tmpdir) {
    char path[4096], aborted[4096], nodir[4096];
    snprintf(path, sizeof path, "%s/written.gguf", tmpdir);
    snprintf(aborted, sizeof aborted, "%s/aborted.gguf", tmpdir);
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.gguf", tmpdir);

    float w[2 * 64], bias[3] = {0.5f, -1.25f, 2.0f};
    for (size_t i = 0; i < 2 * 64; i++) w[i] = weight_value(i);
    uint8_t q[2 * 68];
    OK(fq_quantize(FQ_TYPE_Q8_0, FQ_TYPE_F32, w, 2 * 64, 64, NULL, q, sizeof q, 0));

    FqGgufWriter *wr = NULL;
    OK(fq_gguf_writer_open(path, &wr));
    OK(fq_gguf_writer_add_string(wr, "general.architecture", "cabi"));
    OK(fq_gguf_writer_add_int(wr, "cabi.context_length", 4, 2048));   /* UINT32 */
    OK(fq_gguf_writer_add_int(wr, "cabi.offset", 11, -7));            /* INT64 */
    OK(fq_gguf_writer_add_int(wr, "cabi.flag", 7, 1));                /* BOOL */
    OK(fq_gguf_writer_add_float(wr, "cabi.eps", 6, 1e-5));            /* FLOAT32 */
    int32_t ids[4] = {3, 1, 4, 1};
    OK(fq_gguf_writer_add_array(wr, "cabi.ids", 5, ids, 4));          /* ARRAY[INT32] */
    const char *vocab[3] = {"<s>", "hello", "world"};
    OK(fq_gguf_writer_add_string_array(wr, "tokenizer.ggml.tokens", vocab, 3));
    EXPECT_ERROR(fq_gguf_writer_add_int(wr, "cabi.flag", 4, 1), FQ_STATUS_INVALID_ARGUMENT, "already added");
    EXPECT_ERROR(fq_gguf_writer_add_int(wr, "cabi.small", 0, 300), FQ_STATUS_INVALID_ARGUMENT, "does not fit");
    EXPECT_ERROR(fq_gguf_writer_add_int(wr, "cabi.s", 8, 1), FQ_STATUS_WRONG_VALUE_TYPE, "not an integer");
    EXPECT_ERROR(fq_gguf_writer_add_float(wr, "cabi.f", 4, 1.0), FQ_STATUS_WRONG_VALUE_TYPE, "FLOAT32");

    uint64_t wdims[2] = {64, 2}, bdims[1] = {3}, bad[1] = {33};
    OK(fq_gguf_writer_add_tensor(wr, "w", FQ_TYPE_Q8_0, 2, wdims));
    OK(fq_gguf_writer_add_tensor(wr, "bias", FQ_TYPE_F32, 1, bdims));
    EXPECT_ERROR(fq_gguf_writer_add_tensor(wr, "w", FQ_TYPE_F32, 1, bdims), FQ_STATUS_INVALID_ARGUMENT,
                 "already added");
    EXPECT_ERROR(fq_gguf_writer_add_tensor(wr, "odd", FQ_TYPE_Q8_0, 1, bad), FQ_STATUS_INVALID_ARGUMENT,
                 "row length 33");
    EXPECT_ERROR(fq_gguf_writer_add_tensor(wr, "flat", FQ_TYPE_F32, 5, bdims), FQ_STATUS_INVALID_ARGUMENT,
                 "n_dims");

    EXPECT_ERROR(fq_gguf_writer_write_tensor(wr, "bias", bias, sizeof bias), FQ_STATUS_INVALID_ARGUMENT,
                 "out of order");
    EXPECT_ERROR(fq_gguf_writer_write_tensor(wr, "w", q, sizeof q - 1), FQ_STATUS_SIZE, "tensor data bytes");
    OK(fq_gguf_writer_write_tensor(wr, "w", q, sizeof q));
    EXPECT_ERROR(fq_gguf_writer_add_string(wr, "late", "x"), FQ_STATUS_INVALID_ARGUMENT, "before the first");
    CHECK(fopen(path, "rb") == NULL, "the target exists before finish");
    OK(fq_gguf_writer_write_tensor(wr, "bias", bias, sizeof bias));
    OK(fq_gguf_writer_finish(wr));
    EXPECT_ERROR(fq_gguf_writer_finish(wr), FQ_STATUS_INVALID_ARGUMENT, "already finished");
    fq_gguf_writer_free(wr);
    fq_gguf_writer_free(NULL);

    /* Read back with the C reader. */
    FqGguf *g = NULL;
    OK(fq_gguf_open(path, &g));
    size_t count = 0, index = 0, len = 0;
    OK(fq_gguf_metadata_count(g, &count));
    CHECK(count == 7, "%zu metadata pairs", count);
    const char *str = NULL;
    OK(fq_gguf_metadata_find(g, "general.architecture", &index));
    OK(fq_gguf_metadata_string(g, index, &str, &len));
    CHECK(strcmp(str, "cabi") == 0, "architecture %s", str);
    int64_t iv = 0;
    uint32_t vtype = 99;
    OK(fq_gguf_metadata_find(g, "cabi.context_length", &index));
    OK(fq_gguf_metadata_type(g, index, &vtype));
    OK(fq_gguf_metadata_int(g, index, &iv));
    CHECK(vtype == 4 && iv == 2048, "context_length type %u value %lld", vtype, (long long)iv);
    OK(fq_gguf_metadata_find(g, "cabi.offset", &index));
    OK(fq_gguf_metadata_int(g, index, &iv));
    CHECK(iv == -7, "offset %lld", (long long)iv);
    OK(fq_gguf_metadata_find(g, "cabi.flag", &index));
    OK(fq_gguf_metadata_type(g, index, &vtype));
    CHECK(vtype == 7, "flag type %u", vtype);
    double eps = 0.0;
    OK(fq_gguf_metadata_find(g, "cabi.eps", &index));
    OK(fq_gguf_metadata_float(g, index, &eps));
    CHECK(eps == (double)1e-5f, "eps %g", eps);
    OK(fq_gguf_metadata_find(g, "tokenizer.ggml.tokens", &index));
    OK(fq_gguf_metadata_array(g, index, &vtype, &len));
    CHECK(vtype == 8 && len == 3, "tokens: element type %u, %zu elements", vtype, len);
    OK(fq_gguf_metadata_find(g, "cabi.ids", &index));
    OK(fq_gguf_metadata_array(g, index, &vtype, &len));
    CHECK(vtype == 5 && len == 4, "ids: element type %u, %zu elements", vtype, len);

    FqTensorInfo info;
    const uint8_t *data = NULL;
    size_t nbytes = 0;
    OK(fq_gguf_tensor_count(g, &count));
    CHECK(count == 2, "%zu tensors", count);
    OK(fq_gguf_tensor_find(g, "w", &index));
    OK(fq_gguf_tensor_info(g, index, &info));
    CHECK(info.type_id == FQ_TYPE_Q8_0 && info.n_dims == 2 && info.dims[0] == 64 && info.dims[1] == 2,
          "w: type %u, %u dims", info.type_id, info.n_dims);
    OK(fq_gguf_tensor_data(g, index, &data, &nbytes));
    CHECK(nbytes == sizeof q && memcmp(data, q, nbytes) == 0, "w's bytes differ from what was written");
    OK(fq_gguf_tensor_find(g, "bias", &index));
    OK(fq_gguf_tensor_data(g, index, &data, &nbytes));
    CHECK(nbytes == sizeof bias && memcmp(data, bias, nbytes) == 0, "bias's bytes differ");
    fq_gguf_free(g);

    /* A finish before every tensor is written fails and leaves no file; so does an abandoned writer
     * (tests/c_program.rs checks that no temporary file is left in TMPDIR). */
    OK(fq_gguf_writer_open(aborted, &wr));
    OK(fq_gguf_writer_add_tensor(wr, "bias", FQ_TYPE_F32, 1, bdims));
    EXPECT_ERROR(fq_gguf_writer_finish(wr), FQ_STATUS_INVALID_ARGUMENT, "only 0 of 1 tensors");
    fq_gguf_writer_free(wr);
    CHECK(fopen(aborted, "rb") == NULL, "a failed finish left %s", aborted);
    OK(fq_gguf_writer_open(aborted, &wr));
    OK(fq_gguf_writer_add_tensor(wr, "bias", FQ_TYPE_F32, 1, bdims));
    OK(fq_gguf_writer_add_tensor(wr, "bias2", FQ_TYPE_F32, 1, bdims));
    OK(fq_gguf_writer_write_tensor(wr, "bias", bias, sizeof bias));
    fq_gguf_writer_free(wr);
    CHECK(fopen(aborted, "rb") == NULL, "an abandoned writer left %s", aborted);

    wr = (FqGgufWriter *)1;
    EXPECT_ERROR(fq_gguf_writer_open(nodir, &wr), FQ_STATUS_IO, "does not exist");
    CHECK(wr == NULL, "handle not cleared on error");
    EXPECT_ERROR(fq_gguf_writer_add_string(NULL, "k", "v"), FQ_STATUS_NULL_POINTER, "gguf writer is NULL");
    printf("ok gguf writer (metadata of every kind, tensors, read back; errors; abandoned writers)\n");
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s TMPDIR GGUF_PATH\n", argv[0]);
        return 2;
    }
    test_config_and_types();
    test_quantize();
    test_matmul();
    test_attention();
    test_gguf(argv[1], argv[2]);
    test_gguf_writer(argv[1]);
    printf("all C ABI tests passed\n");
    return 0;
}
