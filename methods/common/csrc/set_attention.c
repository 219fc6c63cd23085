/* A large set attends to a few summary rows, with the attention block's residual: out = q + Attn(q, k, v).
 *
 * This is ISAB's second block in SiMPL's task encoder (methods/common/set_transformer.py): at paper sizes 26 sets of
 * 8192 rows, 4 heads of width D = 32, over the M = 32 rows the inducing points produced.  torch's CPU
 * scaled_dot_product_attention runs it as many 32-deep products at 32-48 GFLOP/s; here each head's keys and values
 * (4 KiB each) stay in L1 and blocks of R rows keep their logits and outputs in AVX-512 registers.
 * methods/common/set_attention.py builds this file, checks it against torch's attention, and falls back to torch
 * where it cannot run.
 *
 * Layouts (fp32, row-major, contiguous):
 *   q, out, dout, dq: (n, L, H*D)     the set's rows, head h in columns [h*D, (h+1)*D)
 *   k, v, dk, dv:     (n, M, H*D)     the summary's keys and values
 *   p:                (n, L, H, M)    the attention weights, saved by the forward for the backward
 * (64-byte aligned, as torch allocates, where the forward streams its stores)
 * Per set and head, with s = scale:
 *   forward:  P = softmax(s q kᵀ), out = q + P v
 *   backward: dP = dout vᵀ, dS = s P ∘ (dP − rowsum(P ∘ dP)), dq = dout + dS k, dk = dSᵀ q, dv = Pᵀ dout
 */
#include <immintrin.h>

#define M 32 /* keys per set */
#define D 32 /* head width */
#define R 8  /* rows per register block */
#define MAX_HEADS 16

#define INLINE static inline __attribute__((always_inline))

/* exp on lanes <= 0 (softmax after subtracting the row max): Cephes' expf polynomial, ~1 ulp. */
INLINE __m512 exp_nonpositive(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(y, n);
}

/* Row blocks: `rows` (<= R) rows of 32 floats, row r in the register pair (lo[r], hi[r]). */
INLINE void load_rows(const float *x, long ld, __m512 *lo, __m512 *hi, int rows) {
    for (int r = 0; r < rows; r++) {
        lo[r] = _mm512_loadu_ps(x + r * ld);
        hi[r] = _mm512_loadu_ps(x + r * ld + 16);
    }
}

INLINE void store_rows(float *x, long ld, const __m512 *lo, const __m512 *hi, int rows) {
    for (int r = 0; r < rows; r++) {
        _mm512_storeu_ps(x + r * ld, lo[r]);
        _mm512_storeu_ps(x + r * ld + 16, hi[r]);
    }
}

/* row r += a_r · b for a block of rows a (row stride lda) and a 32 x 32 matrix b (row stride ldb) */
/* store_rows, bypassing the caches: for outputs far larger than the last-level cache, which the next operator reads
 * back from memory anyway; it saves reading each line in before writing it (forward at paper sizes: 75 -> 65 ms) */
INLINE void stream_rows(float *x, long ld, const __m512 *lo, const __m512 *hi, int rows) {
    for (int r = 0; r < rows; r++) {
        _mm512_stream_ps(x + r * ld, lo[r]);
        _mm512_stream_ps(x + r * ld + 16, hi[r]);
    }
}

INLINE void add_times_matrix(const float *a, long lda, const float *b, long ldb, __m512 *lo, __m512 *hi, int rows) {
    for (int t = 0; t < 32; t++) {
        __m512 b0 = _mm512_loadu_ps(b + t * ldb), b1 = _mm512_loadu_ps(b + t * ldb + 16);
        for (int r = 0; r < rows; r++) {
            __m512 s = _mm512_set1_ps(a[r * lda + t]);
            lo[r] = _mm512_fmadd_ps(s, b0, lo[r]);
            hi[r] = _mm512_fmadd_ps(s, b1, hi[r]);
        }
    }
}

/* c += aᵀ · x for a block of rows a (row stride lda, 32 columns) and the block x held in registers: row j of the
 * 32 x 32 matrix c (row stride ldc) gains Σ_r a[r][j] x_r; two rows of c at a time for independent FMA chains */
INLINE void add_transposed_times_rows(const float *a, long lda, const __m512 *lo, const __m512 *hi, float *c,
                                      long ldc, int rows) {
    for (int j = 0; j < 32; j += 2) {
        __m512 a0 = _mm512_loadu_ps(c + j * ldc), a1 = _mm512_loadu_ps(c + j * ldc + 16);
        __m512 c0 = _mm512_loadu_ps(c + (j + 1) * ldc), c1 = _mm512_loadu_ps(c + (j + 1) * ldc + 16);
        for (int r = 0; r < rows; r++) {
            __m512 b = _mm512_set1_ps(a[r * lda + j]), e = _mm512_set1_ps(a[r * lda + j + 1]);
            a0 = _mm512_fmadd_ps(b, lo[r], a0);
            a1 = _mm512_fmadd_ps(b, hi[r], a1);
            c0 = _mm512_fmadd_ps(e, lo[r], c0);
            c1 = _mm512_fmadd_ps(e, hi[r], c1);
        }
        _mm512_storeu_ps(c + j * ldc, a0);
        _mm512_storeu_ps(c + j * ldc + 16, a1);
        _mm512_storeu_ps(c + (j + 1) * ldc, c0);
        _mm512_storeu_ps(c + (j + 1) * ldc + 16, c1);
    }
}

/* `rows` (<= R) rows of one head.  kt: its keys, transposed and scaled, (D, M); v: its values, row stride ld. */
INLINE void forward_block(const float *q, const float *kt, const float *v, float *out, float *p, long ld, long ldp,
                          int stream, int rows) {
    __m512 lo[R], hi[R];
    float w[R][M] __attribute__((aligned(64)));
    for (int r = 0; r < rows; r++) lo[r] = hi[r] = _mm512_setzero_ps();
    add_times_matrix(q, ld, kt, M, lo, hi, rows);  /* logits: row r's 32 keys in two vectors */
    for (int r = 0; r < rows; r++) {  /* softmax over the 32 keys */
        __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(_mm512_max_ps(lo[r], hi[r])));
        __m512 e0 = exp_nonpositive(_mm512_sub_ps(lo[r], mx)), e1 = exp_nonpositive(_mm512_sub_ps(hi[r], mx));
        __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(_mm512_add_ps(e0, e1)));
        lo[r] = _mm512_mul_ps(e0, inv);
        hi[r] = _mm512_mul_ps(e1, inv);
    }
    store_rows(&w[0][0], M, lo, hi, rows);
    if (stream) stream_rows(p, ldp, lo, hi, rows);
    else store_rows(p, ldp, lo, hi, rows);
    load_rows(q, ld, lo, hi, rows);  /* out = q + P v */
    add_times_matrix(&w[0][0], M, v, ld, lo, hi, rows);
    if (stream) stream_rows(out, ld, lo, hi, rows);
    else store_rows(out, ld, lo, hi, rows);
}

/* The head's keys (or values) of one set, transposed to (D, M) and multiplied by `scale`. */
static void transpose_head(const float *x, long ld, float scale, float *xt) {
    for (int j = 0; j < M; j++)
        for (int d = 0; d < D; d++) xt[d * M + j] = x[j * ld + d] * scale;
}

/* stream: write out and p past the caches (stream_rows) */
void set_attention_forward(const float *q, const float *k, const float *v, float *out, float *p, long n, long L,
                           long H, float scale, int stream) {
    const long ld = H * D, ldp = H * M;
    float kt[MAX_HEADS * D * M] __attribute__((aligned(64)));
    for (long s = 0; s < n; s++) {
        const float *ks = k + s * M * ld, *vs = v + s * M * ld;
        for (long h = 0; h < H; h++) transpose_head(ks + h * D, ld, scale, kt + h * D * M);
        for (long i = 0; i < L; i += R) {
            const long row = s * L + i;
            for (long h = 0; h < H; h++) {
                const float *qi = q + row * ld + h * D;
                float *oi = out + row * ld + h * D, *pi = p + row * ldp + h * M;
                const float *kh = kt + h * D * M, *vh = vs + h * D;
                if (L - i >= R) forward_block(qi, kh, vh, oi, pi, ld, ldp, stream, R);
                else
                    for (long t = 0; t < L - i; t++)
                        forward_block(qi + t * ld, kh, vh, oi + t * ld, pi + t * ldp, ld, ldp, stream, 1);
            }
        }
    }
    if (stream) _mm_sfence();  /* the streamed stores are visible before the caller reads them */
}

/* `rows` (<= R) rows of one head.  vt: this head's values transposed, (D, M); k, dk, dv: row stride ld. */
INLINE void backward_block(const float *dout, const float *q, const float *k, const float *vt, const float *p,
                           float *dq, float *dk, float *dv, long ld, long ldp, float scale, int rows) {
    __m512 lo[R], hi[R];
    float ds[R][M] __attribute__((aligned(64)));
    for (int r = 0; r < rows; r++) lo[r] = hi[r] = _mm512_setzero_ps();
    add_times_matrix(dout, ld, vt, M, lo, hi, rows);  /* dP = dout vᵀ */
    const __m512 sc = _mm512_set1_ps(scale);
    for (int r = 0; r < rows; r++) {  /* dS = s P ∘ (dP − rowsum(P ∘ dP)) */
        __m512 p0 = _mm512_loadu_ps(p + r * ldp), p1 = _mm512_loadu_ps(p + r * ldp + 16);
        __m512 dot = _mm512_set1_ps(_mm512_reduce_add_ps(_mm512_fmadd_ps(p0, lo[r], _mm512_mul_ps(p1, hi[r]))));
        lo[r] = _mm512_mul_ps(_mm512_mul_ps(p0, sc), _mm512_sub_ps(lo[r], dot));
        hi[r] = _mm512_mul_ps(_mm512_mul_ps(p1, sc), _mm512_sub_ps(hi[r], dot));
    }
    store_rows(&ds[0][0], M, lo, hi, rows);
    load_rows(dout, ld, lo, hi, rows);  /* dq = dout + dS k */
    add_times_matrix(&ds[0][0], M, k, ld, lo, hi, rows);
    store_rows(dq, ld, lo, hi, rows);
    load_rows(q, ld, lo, hi, rows);  /* dk += dSᵀ q */
    add_transposed_times_rows(&ds[0][0], M, lo, hi, dk, ld, rows);
    load_rows(dout, ld, lo, hi, rows);  /* dv += Pᵀ dout */
    add_transposed_times_rows(p, ldp, lo, hi, dv, ld, rows);
}

/* dk and dv are overwritten. */
void set_attention_backward(const float *dout, const float *q, const float *k, const float *v, const float *p,
                            float *dq, float *dk, float *dv, long n, long L, long H, float scale) {
    const long ld = H * D, ldp = H * M;
    float vt[MAX_HEADS * D * M] __attribute__((aligned(64)));
    for (long i = 0; i < n * M * ld; i++) dk[i] = dv[i] = 0.0f;
    for (long s = 0; s < n; s++) {
        const float *ks = k + s * M * ld;
        float *dks = dk + s * M * ld, *dvs = dv + s * M * ld;
        for (long h = 0; h < H; h++) transpose_head(v + s * M * ld + h * D, ld, 1.0f, vt + h * D * M);
        for (long i = 0; i < L; i += R) {
            const long row = s * L + i;
            for (long h = 0; h < H; h++) {
                const long o = row * ld + h * D;
                const float *pi = p + row * ldp + h * M;
                if (L - i >= R)
                    backward_block(dout + o, q + o, ks + h * D, vt + h * D * M, pi, dq + o, dks + h * D, dvs + h * D,
                                   ld, ldp, scale, R);
                else
                    for (long t = 0; t < L - i; t++)
                        backward_block(dout + o + t * ld, q + o + t * ld, ks + h * D, vt + h * D * M, pi + t * ldp,
                                       dq + o + t * ld, dks + h * D, dvs + h * D, ld, ldp, scale, 1);
            }
        }
    }
}
