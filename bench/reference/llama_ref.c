/*
 * llama_ref.c: a small float32 Llama-2 forward pass in C, the compiled yardstick for
 * `npm run bench:engine`. Written for mesh-llm from the math (RMSNorm, RoPE, grouped-query
 * causal attention, SwiGLU, shared or separate classifier); it reads only the legacy
 * version-0 llama2.c checkpoint header and decodes greedily from BOS.
 *
 *   cc -O3 -march=native -o llama_ref llama_ref.c -lm
 *   ./llama_ref MODEL.bin POSITIONS [REPEATS]
 *
 * Output (stdout): one line per repetition
 *   "tokens_per_second <wall-clock rate> cpu_tokens_per_second <rate per CPU second> positions <n>",
 * then "peak_rss_kb <n>" and one line "ids <BOS> <id> <id> ..." of the last repetition. Generation stops after
 * POSITIONS forward passes or when BOS is produced, like llama2.c's loop. Timing covers the
 * whole loop of each repetition (every position, the first one included).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct {
    int dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared;
} Config;

typedef struct {
    float *embed;    /* [vocab, dim] */
    float *rms_att;  /* [layers, dim] */
    float *wq;       /* [layers, dim, dim] */
    float *wk;       /* [layers, kv_dim, dim] */
    float *wv;       /* [layers, kv_dim, dim] */
    float *wo;       /* [layers, dim, dim] */
    float *rms_ffn;  /* [layers, dim] */
    float *w1;       /* [layers, hidden, dim] */
    float *w2;       /* [layers, dim, hidden] */
    float *w3;       /* [layers, hidden, dim] */
    float *rms_final;/* [dim] */
    float *cls;      /* [vocab, dim] */
} Weights;

typedef struct {
    float *x, *xb, *xb2, *q, *hb, *hb2, *att, *logits;
    float *key_cache, *value_cache; /* [layers, seq_len, kv_dim] */
} State;

static void die(const char *what, const char *path) {
    fprintf(stderr, "llama_ref: %s: %s\n", path, what);
    exit(1);
}

static float *take(float **cursor, size_t n) {
    float *p = *cursor;
    *cursor += n;
    return p;
}

static void load(const char *path, Config *c, Weights *w, float **blob) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open", path);
    int h[7];
    if (fread(h, sizeof(int), 7, f) != 7) die("short header", path);
    c->dim = h[0]; c->hidden = h[1]; c->layers = h[2]; c->heads = h[3];
    c->kv_heads = h[4]; c->shared = h[5] > 0; c->vocab = abs(h[5]); c->seq_len = h[6];
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f) - 7 * (long)sizeof(int);
    fseek(f, 7 * sizeof(int), SEEK_SET);
    *blob = malloc(bytes);
    if (!*blob || fread(*blob, 1, bytes, f) != (size_t)bytes) die("short read", path);
    fclose(f);

    size_t dim = c->dim, hs = dim / c->heads, kv_dim = c->kv_heads * hs, L = c->layers;
    size_t need = (size_t)c->vocab * dim + L * (2 * dim + dim * dim * 2 + kv_dim * dim * 2 + 3 * dim * c->hidden)
                + dim + (size_t)c->seq_len * hs + (c->shared ? 0 : (size_t)c->vocab * dim);
    if ((size_t)bytes < need * sizeof(float)) die("file shorter than its header implies", path);

    float *p = *blob;
    w->embed = take(&p, c->vocab * dim);
    w->rms_att = take(&p, L * dim);
    w->wq = take(&p, L * dim * dim);
    w->wk = take(&p, L * kv_dim * dim);
    w->wv = take(&p, L * kv_dim * dim);
    w->wo = take(&p, L * dim * dim);
    w->rms_ffn = take(&p, L * dim);
    w->w1 = take(&p, L * c->hidden * dim);
    w->w2 = take(&p, L * dim * c->hidden);
    w->w3 = take(&p, L * c->hidden * dim);
    w->rms_final = take(&p, dim);
    take(&p, c->seq_len * hs); /* legacy RoPE tables (real and imaginary halves): unused */
    w->cls = c->shared ? w->embed : p;
}

/* out[i] = weight[i] * x[i] / sqrt(mean(x^2) + 1e-5). Shapes: [n]. */
static void rmsnorm(float *out, const float *x, const float *weight, int n) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    ss = 1.0f / sqrtf(ss / n + 1e-5f);
    for (int i = 0; i < n; i++) out[i] = weight[i] * (ss * x[i]);
}

/* out = W x. W [rows, cols] row-major, x [cols], out [rows]. */
static void matmul(float *out, const float *x, const float *w, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        const float *row = w + (size_t)r * cols;
        float sum = 0.0f;
        for (int c = 0; c < cols; c++) sum += row[c] * x[c];
        out[r] = sum;
    }
}

/* In-place softmax over x[0, n). */
static void softmax(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++) if (x[i] > max) max = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - max); sum += x[i]; }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

/* Rotates consecutive pairs of v[0, n) by pos * 10000^(-(i mod hs)/hs), i the even index. */
static void rope(float *v, int n, int hs, int pos) {
    for (int i = 0; i < n; i += 2) {
        float freq = 1.0f / powf(10000.0f, (float)(i % hs) / (float)hs);
        float angle = pos * freq;
        float c = cosf(angle), s = sinf(angle);
        float v0 = v[i], v1 = v[i + 1];
        v[i] = v0 * c - v1 * s;
        v[i + 1] = v0 * s + v1 * c;
    }
}

/* One position: token in, logits [vocab] out (s->logits). */
static float *forward(const Config *c, const Weights *w, State *s, int token, int pos) {
    int dim = c->dim, hidden = c->hidden, hs = dim / c->heads;
    int kv_dim = c->kv_heads * hs, kv_mul = c->heads / c->kv_heads;
    float *x = s->x;
    memcpy(x, w->embed + (size_t)token * dim, dim * sizeof(float));

    for (int l = 0; l < c->layers; l++) {
        float *kc = s->key_cache + (size_t)l * c->seq_len * kv_dim;
        float *vc = s->value_cache + (size_t)l * c->seq_len * kv_dim;
        float *k = kc + (size_t)pos * kv_dim, *v = vc + (size_t)pos * kv_dim;

        /* attention: xb = norm(x); q, k, v projections; RoPE */
        rmsnorm(s->xb, x, w->rms_att + l * dim, dim);
        matmul(s->q, s->xb, w->wq + (size_t)l * dim * dim, dim, dim);
        matmul(k, s->xb, w->wk + (size_t)l * kv_dim * dim, kv_dim, dim);
        matmul(v, s->xb, w->wv + (size_t)l * kv_dim * dim, kv_dim, dim);
        rope(s->q, dim, hs, pos);
        rope(k, kv_dim, hs, pos);

        /* each query head h attends over positions 0..pos of kv head h / kv_mul */
        for (int h = 0; h < c->heads; h++) {
            const float *q = s->q + h * hs;
            int kv_off = (h / kv_mul) * hs;
            for (int t = 0; t <= pos; t++) {
                const float *kt = kc + (size_t)t * kv_dim + kv_off;
                float score = 0.0f;
                for (int i = 0; i < hs; i++) score += q[i] * kt[i];
                s->att[t] = score / sqrtf((float)hs);
            }
            softmax(s->att, pos + 1);
            float *out = s->xb + h * hs;
            memset(out, 0, hs * sizeof(float));
            for (int t = 0; t <= pos; t++) {
                const float *vt = vc + (size_t)t * kv_dim + kv_off;
                float a = s->att[t];
                for (int i = 0; i < hs; i++) out[i] += a * vt[i];
            }
        }
        matmul(s->xb2, s->xb, w->wo + (size_t)l * dim * dim, dim, dim);
        for (int i = 0; i < dim; i++) x[i] += s->xb2[i];

        /* feed-forward: x += W2 (silu(W1 n) * W3 n), n = norm(x) */
        rmsnorm(s->xb, x, w->rms_ffn + l * dim, dim);
        matmul(s->hb, s->xb, w->w1 + (size_t)l * hidden * dim, hidden, dim);
        matmul(s->hb2, s->xb, w->w3 + (size_t)l * hidden * dim, hidden, dim);
        for (int i = 0; i < hidden; i++) {
            float a = s->hb[i];
            s->hb[i] = a * (1.0f / (1.0f + expf(-a))) * s->hb2[i];
        }
        matmul(s->xb2, s->hb, w->w2 + (size_t)l * dim * hidden, dim, hidden);
        for (int i = 0; i < dim; i++) x[i] += s->xb2[i];
    }
    rmsnorm(x, x, w->rms_final, dim);
    matmul(s->logits, x, w->cls, c->vocab, dim);
    return s->logits;
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (v[i] > v[best]) best = i;
    return best;
}

static double seconds_on(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.bin POSITIONS [REPEATS]\n", argv[0]);
        return 2;
    }
    Config c;
    Weights w;
    float *blob;
    load(argv[1], &c, &w, &blob);
    int positions = atoi(argv[2]);
    int repeats = argc > 3 ? atoi(argv[3]) : 1;
    if (positions <= 0 || positions > c.seq_len) positions = c.seq_len;

    int hs = c.dim / c.heads, kv_dim = c.kv_heads * hs;
    State s;
    s.x = calloc(c.dim, sizeof(float));
    s.xb = calloc(c.dim, sizeof(float));
    s.xb2 = calloc(c.dim, sizeof(float));
    s.q = calloc(c.dim, sizeof(float));
    s.hb = calloc(c.hidden, sizeof(float));
    s.hb2 = calloc(c.hidden, sizeof(float));
    s.att = calloc(c.seq_len, sizeof(float));
    s.logits = calloc(c.vocab, sizeof(float));
    s.key_cache = calloc((size_t)c.layers * c.seq_len * kv_dim, sizeof(float));
    s.value_cache = calloc((size_t)c.layers * c.seq_len * kv_dim, sizeof(float));
    int *ids = malloc((positions + 1) * sizeof(int));

    int n = 0;
    for (int r = 0; r < repeats; r++) {
        double start = seconds_on(CLOCK_MONOTONIC), cpu_start = seconds_on(CLOCK_PROCESS_CPUTIME_ID);
        int token = 1; /* BOS */
        ids[0] = token;
        n = 1;
        for (int pos = 0; pos < positions; pos++) {
            int next = argmax(forward(&c, &w, &s, token, pos), c.vocab);
            if (next == 1) break;
            ids[n++] = next;
            token = next;
        }
        double seconds = seconds_on(CLOCK_MONOTONIC) - start;
        double cpu_seconds = seconds_on(CLOCK_PROCESS_CPUTIME_ID) - cpu_start;
        printf("tokens_per_second %.1f cpu_tokens_per_second %.1f positions %d\n", (n - 1) / seconds, (n - 1) / cpu_seconds, n - 1);
    }
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    printf("peak_rss_kb %ld\n", usage.ru_maxrss);
    printf("ids");
    for (int i = 0; i < n; i++) printf(" %d", ids[i]);
    printf("\n");
    return 0;
}
