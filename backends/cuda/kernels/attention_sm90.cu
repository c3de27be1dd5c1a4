// Block-sparse FlashAttention forward for sm_90a (H100 / H200 / H20), in
// the FlashAttention-3 style (see cuda-kernel-design.md section 7):
//  - one CTA per (128-row query block, batch x head), 384 threads: warpgroup
//    0 is the producer (one thread issues every bulk tensor copy, the rest
//    give their registers away), warpgroups 1 and 2 are consumers owning 64
//    query rows each;
//  - Q and the kept 128-key K / V blocks come by TMA (tensor maps encoded on
//    the host, 128-byte swizzle); the block list drives the K / V
//    coordinates; K and V go through a ring of STAGES mbarrier-guarded slots;
//  - S = Q K^T by wgmma from shared memory, O += P V by wgmma with P from
//    registers and V read through the transpose bit; softmax in registers,
//    serial within a warpgroup (the two warpgroups overlap each other's
//    GEMMs and softmax only through the warp schedulers);
//  - the list is walked from its end, so the diagonal (the only block that
//    needs the per-token causal mask) comes first; GQA heads read K / V of
//    their KV head in place.
// Taken for block 128, head_dim 64 / 128 / 256 (256: K / V in half-block
// tiles of 64 keys), f16 / bf16 and tensors the TMA can
// describe (16-byte aligned base and strides, unit element stride). Each
// kernel below head_dim 256 has a persistent twin, <name>_persist
// (attn_sm90_persist below, STEM_CUDA_PERSISTENT=1 or 2).
#include "attn_common.cuh"
#include "wgmma.cuh"

#define BM 128   // query rows per CTA = block size
#define BN 128   // keys per kept block of the lists
#define THREADS 384

// Keys per K / V stage: a whole block, or at head_dim 256 half a block (a
// 64 x 256 O accumulator is 128 registers per thread, and Q plus two stages
// of whole 128 x 256 K / V blocks would not fit in shared memory).
// Host mirror: stem_cuda_sm90_kv_rows() in cuda_variants.c.
template <int D> __device__ __host__ constexpr int kv_rows() { return D == 256 ? 64 : 128; }

// The 128-byte CUtensorMap, passed by value.
struct __align__(64) tmap {
    unsigned long long v[16];
};

__device__ __forceinline__ unsigned saddr(const void *p)
{
    return (unsigned)__cvta_generic_to_shared(p);
}

// ------------------------------------------------------------- mbarrier
__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(unsigned bar, unsigned bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void mbar_arrive(unsigned bar)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity)
{
    unsigned done = 0;
    do {
        asm volatile("{\n.reg .pred p;\n"
                     "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!done);
}

// One 5-D box {64 elements, 128 rows, panels, 1 head, 1 batch} into shared
// memory as [panel][row][64 elements], completing on `bar`.
__device__ __forceinline__ void tma_load(unsigned dst, const tmap *map, int row, int head,
                                         int batch, unsigned bar)
{
    asm volatile("cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3, %4, %5, %6}], [%7];\n" ::"r"(dst),
                 "l"(reinterpret_cast<unsigned long long>(map)), "r"(0), "r"(row), "r"(0),
                 "r"(head), "r"(batch), "r"(bar)
                 : "memory");
}

template <int N> __device__ __forceinline__ void setmaxnreg_inc()
{
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N> __device__ __forceinline__ void setmaxnreg_dec()
{
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

template <int D, bool BF16> struct sm90_mma;
#define STEM_SM90_MMA(D, BF16, TY, KB)                                                             \
    template <> struct sm90_mma<D, BF16> {                                                         \
        static __device__ __forceinline__ void qk(float (&s)[KB / 8][4], unsigned long long a,   \
                                                  unsigned long long b, int acc)                   \
        {                                                                                          \
            wgmma_ss_m64n##KB##_##TY(s, a, b, acc);                                                \
        }                                                                                          \
        static __device__ __forceinline__ void pv(float (&o)[D / 8][4], const unsigned (&a)[4],  \
                                                  unsigned long long b)                            \
        {                                                                                          \
            wgmma_rs_m64n##D##_##TY##_tb(o, a, b);                                                 \
        }                                                                                          \
    };
STEM_SM90_MMA(64, true, bf16, 128)
STEM_SM90_MMA(128, true, bf16, 128)
STEM_SM90_MMA(256, true, bf16, 64)
STEM_SM90_MMA(64, false, f16, 128)
STEM_SM90_MMA(128, false, f16, 128)
STEM_SM90_MMA(256, false, f16, 64)

// Shared memory: Q [panel][128 rows][128 bytes], STAGES x (K, V) [panel][KB
// rows][128 bytes], 1024-byte aligned (the swizzle atom); then the barriers
// and the key-tile index of each stage. Host mirror: sm90_smem() in cuda_variants.c. The
// persistent variant (NQ = 2) double-buffers Q: stem_cuda_persist_smem()
// in cuda_common.h.
template <int D, int STAGES, int NQ = 1> struct sm90_smem {
    static constexpr unsigned TILE = BM * D * 2;            // bytes of the Q tile
    static constexpr unsigned KVT = kv_rows<D>() * D * 2;   // bytes of one K or V stage
    static constexpr unsigned Q = 0, K = NQ * TILE, V = K + STAGES * KVT, BAR = V + STAGES * KVT;
    static constexpr unsigned BYTES = BAR + 256 + 1024; // + barriers + alignment slack
};


// The dynamic shared memory from its first 1024-byte boundary (the swizzle
// atom; sm90_smem's 1 KB of slack covers the offset).
__device__ __forceinline__ unsigned char *smem_aligned()
{
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    return smem_raw + ((1024 - (saddr(smem_raw) & 1023)) & 1023);
}

// A ring position in one register (the producer has 24): slot in the low
// bits, phase bit on top. Both kernels walk the K and the V ring with one each.
struct ring {
    unsigned v;
    __device__ __forceinline__ int s() const { return (int)(v & 0xffu); }
    __device__ __forceinline__ unsigned ph() const { return v >> 31; }
    template <int STAGES> __device__ __forceinline__ void next()
    {
        v = ((v & 0xffu) + 1u == (unsigned)STAGES) ? (v & 0x80000000u) ^ 0x80000000u : v + 1u;
    }
};

// The mbarriers of the K / V ring, from b0 on: per stage K full, V full,
// K empty, V empty (the empty ones take one arrival per consumer warp).
template <int STAGES> struct kv_bars {
    unsigned b0;
    __device__ __forceinline__ unsigned kfull(int s) const { return b0 + 8u * (unsigned)s; }
    __device__ __forceinline__ unsigned vfull(int s) const { return b0 + 8u * (STAGES + (unsigned)s); }
    __device__ __forceinline__ unsigned kempty(int s) const { return b0 + 8u * (2u * STAGES + (unsigned)s); }
    __device__ __forceinline__ unsigned vempty(int s) const { return b0 + 8u * (3u * STAGES + (unsigned)s); }
    __device__ __forceinline__ void init() const
    {
        for (int s = 0; s < STAGES; s++) {
            mbar_init(kfull(s), 1);
            mbar_init(vfull(s), 1);
            mbar_init(kempty(s), 8);
            mbar_init(vempty(s), 8);
        }
    }
};

__device__ __forceinline__ void prefetch_tmaps(const tmap *tq, const tmap *tk, const tmap *tv)
{
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(tq)) : "memory");
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(tk)) : "memory");
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(tv)) : "memory");
}

// ------------------------------------------------------ producer (one row)
// The producer thread's loads for query block I: K of key tile i, then V of
// tile i - 1 (the order the overlapped consumers use them in), a key tile
// being a kept block or (head_dim 256) each half of one; a K stage holding
// -1 ends the row. Entries are walked from the end (the diagonal first)
// through a pointer, the next one read before the waits.
// 32-bit coordinates (the producer has 24 registers): heads and batches
// < 65536, blocks < 2^31 (cuda_stages.c checks both).
template <int D, int STAGES>
__device__ __forceinline__ void produce_row(const list_row &row, int I, int kh, int b,
                                            unsigned kdst, unsigned vdst, kv_bars<STAGES> kb,
                                            volatile int *stage_j, ring &kr, ring &vr,
                                            const tmap *tk, const tmap *tv)
{
    constexpr int KB = kv_rows<D>(), SUB = BN / KB;
    constexpr unsigned KVT = KB * D * 2;
    auto load_v = [&](int t) {
        mbar_wait(kb.vempty(vr.s()), vr.ph() ^ 1u);
        mbar_expect_tx(kb.vfull(vr.s()), KVT);
        tma_load(vdst + vr.s() * KVT, tv, t * KB, kh, b, kb.vfull(vr.s()));
        vr.template next<STAGES>();
    };
    const int *e = row.idx + (long long)(row.cnt > 0 ? row.cnt - 1 : 0) * row.step;
    int prev = I + 1; // the previous kept entry
    int vt = -1;      // the key tile whose V is due next
    int Jn = row.cnt > 0 ? *e : -1;
    for (int jj = row.cnt - 1; jj >= 0; jj--) {
        const int J = Jn;
        if (jj > 0) {
            e -= row.step;
            Jn = *e;
        }
        if (J < 0 || J >= prev)
            continue;
        prev = J;
#pragma unroll
        for (int sub = 0; sub < SUB; sub++) {
            const int t = J * SUB + sub;
            mbar_wait(kb.kempty(kr.s()), kr.ph() ^ 1u);
            stage_j[kr.s()] = t;
            mbar_expect_tx(kb.kfull(kr.s()), KVT);
            tma_load(kdst + kr.s() * KVT, tk, t * KB, kh, b, kb.kfull(kr.s()));
            kr.template next<STAGES>();
            if (vt >= 0)
                load_v(vt);
            vt = t;
        }
    }
    mbar_wait(kb.kempty(kr.s()), kr.ph() ^ 1u);
    stage_j[kr.s()] = -1;
    mbar_arrive(kb.kfull(kr.s()));
    kr.template next<STAGES>();
    if (vt >= 0)
        load_v(vt);
}

// Named barriers 1 and 2 (256 threads: one consumer warpgroup syncs, the
// other arrives) hand the tensor cores from one consumer warpgroup to the other.
__device__ __forceinline__ void named_sync(unsigned id)
{
    asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory");
}
__device__ __forceinline__ void named_arrive(unsigned id)
{
    asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory");
}

// ------------------------------------------------- consumer (one row)
// One consumer warpgroup's 64 rows of a query block: S = Q K^T and O += P V
// by wgmma over the kept blocks as the producer delivers them, the online
// softmax, then the store. qdesc0: this warpgroup's Q rows in shared memory;
// qw0: its first absolute query row. qempty (if not 0) is released once
// every wgmma reading Q has completed (the persistent kernel reuses the buffer).
// OVERLAP: softmax of block i under the P V GEMM of block i - 1 (else serial).
// PINGPONG (with OVERLAP): the two consumer warpgroups take turns issuing
// their GEMMs, so one's softmax runs under the other's GEMMs.
template <int D, bool BF16, int STAGES, bool OVERLAP, bool PINGPONG>
__device__ __forceinline__ void consume_row(const stem_kattn &p, const attn_geom &g,
                                            unsigned qdesc0, unsigned kbase0, unsigned vbase0,
                                            kv_bars<STAGES> kb, volatile int *stage_j, ring &kr,
                                            ring &vr, long long qw0, long long b, long long h,
                                            unsigned qempty)
{
    constexpr int KB = kv_rows<D>();               // keys per stage
    constexpr unsigned QPANEL = BM * 128, KVPANEL = KB * 128; // bytes of a 64-column panel
    constexpr unsigned KVT = KB * D * 2;
    const int t = threadIdx.x & 127, w = threadIdx.x / 128 - 1, wi = t >> 5, lane = t & 31;
    const long long qlo = qw0 + 16 * wi + (lane >> 2); // this thread's rows: qlo, qlo + 8
    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++)
        o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    // S = Q K^T: D / 16 k-steps of m64nKBk16; a k-step is +32 bytes inside
    // a 64-column panel, the next panel is +QPANEL / +KVPANEL bytes.
    auto issue_qk = [&](float (&sc)[KB / 8][4], int s) {
        const unsigned kbase = kbase0 + s * KVT;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
            sm90_mma<D, BF16>::qk(sc, smem_desc(qdesc0 + (kk / 4) * QPANEL + (kk % 4) * 32, 16, 1024),
                                  smem_desc(kbase + (kk / 4) * KVPANEL + (kk % 4) * 32, 16, 1024),
                                  kk > 0);
        wgmma_commit();
    };
    // O += P V: V is [key][d] (d contiguous) = MN-major B; a k-step is 16
    // keys = +2048 bytes, the d-panels are KVPANEL bytes apart (LBO).
    auto issue_pv = [&](const unsigned (&pa)[KB / 16][4], int s) {
        const unsigned vbase = vbase0 + s * KVT;
#pragma unroll
        for (int kk = 0; kk < KB / 16; kk++)
            sm90_mma<D, BF16>::pv(o, pa[kk], smem_desc(vbase + kk * 2048, KVPANEL, 1024));
        wgmma_commit();
    };
    // Mask (diagonal block / keys past kv_len only) and the online-softmax
    // step. T: the key tile (keys T KB ...).
    auto softmax = [&](float (&sc)[KB / 8][4], long long T, float alpha[2]) {
        const long long key0 = T * KB;
        if (key0 + KB - 1 > qw0 || key0 + KB > g.kv_len)
            scale_mask<KB / 8, true>(sc, p.scale_log2, key0, qlo, qlo + 8, g.kv_len, lane);
        else
            scale_mask<KB / 8, false>(sc, p.scale_log2, key0, qlo, qlo + 8, g.kv_len, lane);
        softmax_step<KB / 8>(sc, m, l, alpha);
    };
    // Ping-pong turns: warpgroup w issues after bar (1 + w) and then passes
    // the turn on; warpgroup 1 gives warpgroup 0 the first turn, and skips
    // the hand-over after its last issue so every barrier phase completes.
    auto turn_begin = [&]() {
        if (PINGPONG)
            named_sync(1 + w);
    };
    auto turn_end = [&](bool last) {
        if (PINGPONG && !(last && w == 1))
            named_arrive(2 - w);
    };
    auto release = [&](unsigned bar) {
        __syncwarp();
        if (lane == 0)
            mbar_arrive(bar);
    };

    float sc[KB / 8][4];
    unsigned pa[KB / 16][4];
    float alpha[2];
    mbar_wait(kb.kfull(kr.s()), kr.ph());
    long long J = stage_j[kr.s()];
    const bool have = J >= 0;
    if (PINGPONG && have && w == 1)
        named_arrive(1);
    if (have) { // first (diagonal) block
        turn_begin();
        wgmma_fence();
        issue_qk(sc, kr.s());
        turn_end(false);
        wgmma_wait<0>();
        release(kb.kempty(kr.s()));
        softmax(sc, J, alpha);
        pack_p<KB / 8, BF16>(sc, pa);
    } else {
        release(kb.kempty(kr.s())); // an empty row: its end marker
    }
    kr.template next<STAGES>();
    while (have) {
        mbar_wait(kb.kfull(kr.s()), kr.ph());
        J = stage_j[kr.s()];
        if (J < 0) {
            release(kb.kempty(kr.s()));
            kr.template next<STAGES>();
            break;
        }
        mbar_wait(kb.vfull(vr.s()), vr.ph());
        if (!OVERLAP) { // serial: O += P V of the previous block, then S of this one
            wgmma_fence();
            issue_pv(pa, vr.s());
            wgmma_wait<0>();
            release(kb.vempty(vr.s()));
            issue_qk(sc, kr.s());
            wgmma_wait<0>();
            release(kb.kempty(kr.s()));
        } else {
            // Overlapped: S of this block and O += P V of the previous one go
            // to the tensor cores together; this block's softmax runs while
            // P V is still in flight; O is rescaled once P V has landed.
            turn_begin();
            wgmma_fence();
            issue_qk(sc, kr.s());
            issue_pv(pa, vr.s());
            turn_end(false);
            wgmma_wait<1>();
            release(kb.kempty(kr.s()));
        }
        softmax(sc, J, alpha);
        if (OVERLAP) {
            wgmma_wait<0>();
            release(kb.vempty(vr.s()));
        }
        rescale_o<D / 8>(o, alpha);
        pack_p<KB / 8, BF16>(sc, pa);
        kr.template next<STAGES>();
        vr.template next<STAGES>();
    }
    if (have) { // P V of the last block
        mbar_wait(kb.vfull(vr.s()), vr.ph());
        turn_begin();
        wgmma_fence();
        issue_pv(pa, vr.s());
        turn_end(true);
        wgmma_wait<0>();
        release(kb.vempty(vr.s()));
        vr.template next<STAGES>();
    }
    if (qempty)
        release(qempty);
    finish_rows(l);
    const long long row_lo = qlo - g.q_offset;
    store_rows<D / 8>(p, g, b, h, row_lo, row_lo + 8, o, l, m, lane);
}

// ------------------------------------------------- one CTA per query block
template <int D, bool BF16, int STAGES, bool OVERLAP, bool PINGPONG>
__device__ __forceinline__ void attn_sm90(const stem_kattn &p, const tmap *tq, const tmap *tk,
                                          const tmap *tv)
{
    typedef sm90_smem<D, STAGES> L;
    unsigned char *smem = smem_aligned();
    const unsigned sbase = saddr(smem);
    // barriers: Q full, then the K / V ring's; then the block index of each K stage
    const unsigned barQ = sbase + L::BAR;
    const kv_bars<STAGES> kb = {barQ + 8u};
    volatile int *stage_j =
        reinterpret_cast<volatile int *>(reinterpret_cast<unsigned long long *>(smem + L::BAR) + 1 + 4 * STAGES);

    const int tid = threadIdx.x, wg = tid / 128;
    const attn_geom g = attn_geometry(p);
    // Tiles are absolute query blocks (late, longer rows first); with a
    // query offset the first and last may be partial: q0 < 0 rows and rows
    // past q_len are zero-filled by the TMA and never stored.
    const long long I = g.q_offset / BM + (gridDim.x - 1 - blockIdx.x);
    const long long qa0 = I * BM, q0 = qa0 - g.q_offset;
    const long long bh = blockIdx.y, b = bh / p.hq, h = bh % p.hq, kh = h / p.group;

    if (tid == 0) {
        mbar_init(barQ, 1);
        kb.init();
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    ring kr = {0u}, vr = {0u};
    if (wg == 0) { // producer
        setmaxnreg_dec<24>();
        if (tid == 0) {
            prefetch_tmaps(tq, tk, tv);
            mbar_expect_tx(barQ, L::TILE);
            tma_load(sbase + L::Q, tq, (int)q0, (int)h, (int)b, barQ);
            produce_row<D, STAGES>(list_row_of(p, b, h, I), (int)I, (int)kh, (int)b, sbase + L::K,
                                   sbase + L::V, kb, stage_j, kr, vr, tk, tv);
        }
        return;
    }
    setmaxnreg_inc<240>();
    const int w = wg - 1;
    mbar_wait(barQ, 0);
    consume_row<D, BF16, STAGES, OVERLAP, PINGPONG>(p, g, sbase + L::Q + 64 * w * 128, sbase + L::K,
                                                    sbase + L::V, kb, stage_j, kr, vr, qa0 + 64 * w,
                                                    b, h, 0u);
}

// ----------------------------------------------------- persistent variant
// STEM_CUDA_PERSISTENT=1: a grid of at most one CTA per SM walks the
// (query block, batch x head) work items, handed out by a global counter
// (p.sched, zeroed by the launch path before each launch), longest rows
// first: item t is query block n_tiles - 1 - t / (B Hq) of batch x head
// t % (B Hq), or with p.head_major (STEM_CUDA_PERSISTENT=2) block
// n_tiles - 1 - t % n_tiles of batch x head t / n_tiles, the order of the
// per-tile grid (CTAs running together share one KV head's K / V in L2). The producer loads item k + 1's Q (into the other Q buffer)
// and first K / V blocks while the consumers finish item k and its
// epilogue. Per item the producer and consumers run the same row functions
// as attn_sm90, so the output is bitwise identical; the K and V rings run on
// across items, each keeping its slot and phase bit.
// Batch x head and absolute query block of work item t.
__device__ __forceinline__ void persist_item(const stem_kattn &p, const attn_geom &g, unsigned t,
                                             int &bh, long long &I)
{
    const unsigned nt = (unsigned)p.n_tiles, bq = (unsigned)p.bq;
    const unsigned blk = p.head_major ? t % nt : t / bq;
    bh = (int)(p.head_major ? t / nt : t % bq);
    I = g.q_offset / BM + (long long)(nt - 1u - blk);
}

template <int D, bool BF16, int STAGES, bool OVERLAP, bool PINGPONG>
__device__ __forceinline__ void attn_sm90_persist(const stem_kattn &p, const tmap *tq,
                                                  const tmap *tk, const tmap *tv)
{
    typedef sm90_smem<D, STAGES, 2> L;
    unsigned char *smem = smem_aligned();
    const unsigned sbase = saddr(smem);
    const unsigned bar0 = sbase + L::BAR;
    // bars: Q full [2], Q empty [2], then the K / V ring's; then the block
    // index of each K stage and the item of each Q buffer (-1: no more
    // items). 8 (4 + 4 STAGES) + 4 (STAGES + 2) <= 256 bytes.
    const kv_bars<STAGES> kb = {bar0 + 32u};
    volatile int *stage_j =
        reinterpret_cast<volatile int *>(reinterpret_cast<unsigned long long *>(smem + L::BAR) + 4 + 4 * STAGES);
    volatile int *item_of = stage_j + STAGES;
#define BAR_QFULL(k) (bar0 + 8u * (unsigned)(k))
#define BAR_QEMPTY(k) (bar0 + 8u * (2u + (unsigned)(k)))
    static_assert(8 * (4 + 4 * STAGES) + 4 * (STAGES + 2) <= 256, "barrier area");

    const int tid = threadIdx.x, wg = tid / 128;
    const attn_geom g = attn_geometry(p);
    // total < 2^31 (cuda_stages.c checks blocks x batch x heads); the
    // counter ends at total + gridDim.x, below 2^32.
    const unsigned bq = (unsigned)p.bq, total = (unsigned)p.n_tiles * bq;

    if (tid == 0) {
        for (int k = 0; k < 2; k++) {
            mbar_init(BAR_QFULL(k), 1);
            mbar_init(BAR_QEMPTY(k), 8); // one arrival per consumer warp
        }
        kb.init();
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    ring kr = {0u}, vr = {0u};
    if (wg == 0) { // producer
        setmaxnreg_dec<24>();
        if (tid != 0)
            return;
        prefetch_tmaps(tq, tk, tv);
        for (unsigned k = 0;; k++) {
            // Item k goes to Q buffer k & 1 once item k - 2 is done with it
            // (every load of item k - 1 is issued by then), and is claimed
            // only then: a claimed item waits behind at most one running item.
            const int qb = (int)(k & 1u);
            mbar_wait(BAR_QEMPTY(qb), ((k >> 1) & 1u) ^ 1u);
            const unsigned t = atomicAdd(reinterpret_cast<unsigned *>(p.sched), 1u);
            if (t >= total) {
                item_of[qb] = -1;
                mbar_arrive(BAR_QFULL(qb));
                break;
            }
            item_of[qb] = (int)t;
            int bh;
            long long I;
            persist_item(p, g, t, bh, I);
            const int b = bh / p.hq, h = bh % p.hq, kh = h / p.group;
            mbar_expect_tx(BAR_QFULL(qb), L::TILE);
            tma_load(sbase + L::Q + qb * L::TILE, tq, (int)(I * BM - g.q_offset), h, b,
                     BAR_QFULL(qb));
            produce_row<D, STAGES>(list_row_of(p, b, h, I), (int)I, kh, b, sbase + L::K,
                                   sbase + L::V, kb, stage_j, kr, vr, tk, tv);
        }
        return;
    }
    setmaxnreg_inc<240>();
    const int w = wg - 1;
    for (unsigned k = 0;; k++) {
        const int qb = (int)(k & 1u);
        mbar_wait(BAR_QFULL(qb), (k >> 1) & 1u);
        const int item = item_of[qb];
        if (item < 0)
            break;
        int bh;
        long long I;
        persist_item(p, g, (unsigned)item, bh, I);
        const long long b = bh / p.hq, h = bh % p.hq;
        consume_row<D, BF16, STAGES, OVERLAP, PINGPONG>(
            p, g, sbase + L::Q + qb * L::TILE + 64 * w * 128, sbase + L::K, sbase + L::V, kb,
            stage_j, kr, vr, I * BM + 64 * w, b, h, BAR_QEMPTY(qb));
    }
#undef BAR_QFULL
#undef BAR_QEMPTY
}

#define STEM_ATTN_SM90_TILE(name, D, BF16, STAGES, OVERLAP, PINGPONG)                             \
    extern "C" __global__ void __launch_bounds__(THREADS, 1)                                     \
        name(const __grid_constant__ stem_kattn p, const __grid_constant__ tmap tq,               \
             const __grid_constant__ tmap tk, const __grid_constant__ tmap tv)                   \
    {                                                                                             \
        attn_sm90<D, BF16, STAGES, OVERLAP, PINGPONG>(p, &tq, &tk, &tv);                          \
    }
#define STEM_ATTN_SM90(name, D, BF16, STAGES, OVERLAP, PINGPONG)                                  \
    STEM_ATTN_SM90_TILE(name, D, BF16, STAGES, OVERLAP, PINGPONG)                                 \
    extern "C" __global__ void __launch_bounds__(THREADS, 1)                                     \
        name##_persist(const __grid_constant__ stem_kattn p, const __grid_constant__ tmap tq,     \
                       const __grid_constant__ tmap tk, const __grid_constant__ tmap tv)         \
    {                                                                                             \
        attn_sm90_persist<D, BF16, STAGES, OVERLAP, PINGPONG>(p, &tq, &tk, &tv);                  \
    }
// Intra-warpgroup overlap of softmax and GEMMs (STEM_CUDA_ATTN=sm90).
STEM_ATTN_SM90(stem_k_attn_sm90_bf16_d128, 128, true, 2, true, false)
STEM_ATTN_SM90(stem_k_attn_sm90_bf16_d64, 64, true, 3, true, false)
STEM_ATTN_SM90(stem_k_attn_sm90_f16_d128, 128, false, 2, true, false)
STEM_ATTN_SM90(stem_k_attn_sm90_f16_d64, 64, false, 3, true, false)
// Serial softmax per warpgroup (STEM_CUDA_ATTN=sm90s; the baseline of the overlap).
STEM_ATTN_SM90(stem_k_attn_sm90s_bf16_d128, 128, true, 2, false, false)
STEM_ATTN_SM90(stem_k_attn_sm90s_bf16_d64, 64, true, 3, false, false)
STEM_ATTN_SM90(stem_k_attn_sm90s_f16_d128, 128, false, 2, false, false)
STEM_ATTN_SM90(stem_k_attn_sm90s_f16_d64, 64, false, 3, false, false)
// Overlap + ping-pong between the consumer warpgroups (the default on sm_90).
STEM_ATTN_SM90(stem_k_attn_sm90p_bf16_d128, 128, true, 2, true, true)
STEM_ATTN_SM90(stem_k_attn_sm90p_bf16_d64, 64, true, 3, true, true)
STEM_ATTN_SM90(stem_k_attn_sm90p_f16_d128, 128, false, 2, true, true)
STEM_ATTN_SM90(stem_k_attn_sm90p_f16_d64, 64, false, 3, true, true)
// head_dim 256: half-block key tiles, two stages (Q 64 KB + 4 x 32 KB); no
// persistent twin (a second Q buffer would not fit).
STEM_ATTN_SM90_TILE(stem_k_attn_sm90p_bf16_d256, 256, true, 2, true, true)
STEM_ATTN_SM90_TILE(stem_k_attn_sm90p_f16_d256, 256, false, 2, true, true)
STEM_ATTN_SM90_TILE(stem_k_attn_sm90_bf16_d256, 256, true, 2, true, false)
STEM_ATTN_SM90_TILE(stem_k_attn_sm90_f16_d256, 256, false, 2, true, false)
STEM_ATTN_SM90_TILE(stem_k_attn_sm90s_bf16_d256, 256, true, 2, false, false)
STEM_ATTN_SM90_TILE(stem_k_attn_sm90s_f16_d256, 256, false, 2, false, false)
