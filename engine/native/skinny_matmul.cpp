// See skinny_matmul.h. Layout of the work: the N weight rows are cut into chunks
// that the threads take from a shared counter; a chunk is walked four weight rows at
// a time (a "tile"), and every tile is multiplied into all m input rows, two rows
// per pass, while it sits in L1. bf16 tiles are widened once into a float scratch.
#include "skinny_matmul.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define LOOKAHEAD_X86 1
#endif

#include "mlx/backend/cpu/encoder.h"

namespace lookahead {

namespace {

constexpr int kTile = 4;  // weight rows per tile
constexpr int kLanes = 8;

// ---------------------------------------------------------------- thread pool
// Workers spin briefly after a job (consecutive layers follow within microseconds),
// then sleep on a condition variable. Chunks are claimed from one atomic ticket that
// packs (job, chunk count, next chunk), so a worker the OS schedules late can only
// claim a chunk of the job still running, and the caller never waits for it: it
// takes the remaining chunks itself.
class Pool {
 public:
  explicit Pool(int threads) : size_(std::max(1, threads)) {
    for (int t = 1; t < size_; ++t) {
      std::thread([this] { worker(); }).detach();
    }
  }

  int size() const { return size_; }

  // Runs body(chunk) for chunk in [0, chunks), on the caller and the workers.
  void run(int chunks, const std::function<void(int)>& body) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (size_ == 1 || chunks == 1 || !busy.owns_lock() || chunks >= (1 << 20)) {
      for (int c = 0; c < chunks; ++c) body(c);
      return;
    }
    job_ = (job_ + 1) & 0xFFFFFF;
    body_.store(&body, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    ticket_.store(pack(job_, chunks, 0), std::memory_order_release);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    drain();
    while (done_.load(std::memory_order_acquire) < chunks) pause();
  }

 private:
  static uint64_t pack(uint64_t job, uint64_t chunks, uint64_t next) {
    return (job << 40) | (chunks << 20) | next;
  }

  static void pause() {
#ifdef LOOKAHEAD_X86
    _mm_pause();
#else
    std::this_thread::yield();
#endif
  }

  void drain() {
    uint64_t t = ticket_.load(std::memory_order_acquire);
    for (;;) {
      uint64_t chunks = (t >> 20) & 0xFFFFF;
      uint64_t next = t & 0xFFFFF;
      if (next >= chunks) return;
      if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
        continue;
      }
      // The claimed chunk belongs to the running job, so its body is alive.
      (*body_.load(std::memory_order_acquire))(static_cast<int>(next));
      done_.fetch_add(1, std::memory_order_release);
      t = ticket_.load(std::memory_order_acquire);
    }
  }

  void worker() {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = generation_.load(std::memory_order_acquire);
      if (g == seen) {
        auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(150);
        for (int i = 0; g == seen; ++i) {
          pause();
          g = generation_.load(std::memory_order_acquire);
          if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) break;
        }
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] {
          g = generation_.load(std::memory_order_acquire);
          return g != seen;
        });
      }
      seen = g;
      drain();
    }
  }

  const int size_;
  uint64_t job_ = 0;
  std::mutex busy_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> ticket_{0};
  std::atomic<int> done_{0};
  std::atomic<const std::function<void(int)>*> body_{nullptr};
};

int default_threads() {
  if (const char* env = std::getenv("LOOKAHEAD_KERNEL_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(std::min(n, 64u));
}

std::atomic<int> g_threads{0};
std::mutex g_pool_mutex;
Pool* g_pool = nullptr;  // leaked on purpose: detached workers outlive static destructors

Pool& pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  int want = g_threads.load();
  if (want <= 0) want = default_threads();
  if (g_pool == nullptr || g_pool->size() != want) {
    // An old pool's workers stay asleep forever; resizing is rare (tests, benches).
    g_pool = new Pool(want);
  }
  return *g_pool;
}

// ---------------------------------------------------------------- bf16 widening
inline float bf16_to_float(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

void widen_portable(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(src[i]);
}

// ---------------------------------------------------------------- portable loops
// R input rows x J weight rows; acc[r][j][lane] summed over K in steps of 8.
template <int R, int J>
void micro_portable(const float* const* xr, const float* const* wr, int64_t K, float* const* yr,
                    int col) {
  float acc[R][J][kLanes] = {};
  int64_t k8 = K - K % kLanes;
  for (int64_t k = 0; k < k8; k += kLanes) {
    for (int r = 0; r < R; ++r) {
      for (int j = 0; j < J; ++j) {
        for (int l = 0; l < kLanes; ++l) acc[r][j][l] += xr[r][k + l] * wr[j][k + l];
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < J; ++j) {
      float s = 0.f;
      for (int l = 0; l < kLanes; ++l) s += acc[r][j][l];
      for (int64_t k = k8; k < K; ++k) s += xr[r][k] * wr[j][k];
      yr[r][col + j] = s;
    }
  }
}

#ifdef LOOKAHEAD_X86
__attribute__((target("avx2,fma"))) inline float hsum_avx(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 sh = _mm_movehdup_ps(lo);
  lo = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, lo);
  lo = _mm_add_ss(lo, sh);
  return _mm_cvtss_f32(lo);
}

template <int R, int J>
__attribute__((target("avx2,fma"))) void micro_avx2(const float* const* xr,
                                                     const float* const* wr, int64_t K,
                                                     float* const* yr, int col) {
  __m256 acc[R][J];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < J; ++j) acc[r][j] = _mm256_setzero_ps();
  int64_t k8 = K - K % kLanes;
  for (int64_t k = 0; k < k8; k += kLanes) {
    __m256 w[J];
    for (int j = 0; j < J; ++j) w[j] = _mm256_loadu_ps(wr[j] + k);
    for (int r = 0; r < R; ++r) {
      __m256 xv = _mm256_loadu_ps(xr[r] + k);
      for (int j = 0; j < J; ++j) acc[r][j] = _mm256_fmadd_ps(xv, w[j], acc[r][j]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < J; ++j) {
      float s = hsum_avx(acc[r][j]);
      for (int64_t k = k8; k < K; ++k) s += xr[r][k] * wr[j][k];
      yr[r][col + j] = s;
    }
  }
}

__attribute__((target("avx2,fma"))) void widen_avx2(const uint16_t* src, float* dst,
                                                    int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    __m256i v = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(v));
  }
  for (; i < n; ++i) dst[i] = bf16_to_float(src[i]);
}

bool cpu_has_avx2() {
  static const bool ok = [] {
    if (const char* env = std::getenv("LOOKAHEAD_KERNEL_ISA")) {
      if (std::strcmp(env, "portable") == 0) return false;
    }
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return ok;
}
#else
bool cpu_has_avx2() { return false; }
#endif

using MicroFn = void (*)(const float* const*, const float* const*, int64_t, float* const*, int);
using WidenFn = void (*)(const uint16_t*, float*, int64_t);

struct Kernels {
  MicroFn micro[3][kTile + 1];  // [rows 1..2][weight rows 1..4]
  WidenFn widen;
};

Kernels make_kernels() {
  Kernels k{};
#ifdef LOOKAHEAD_X86
  if (cpu_has_avx2()) {
    k.micro[1][1] = micro_avx2<1, 1>;
    k.micro[1][2] = micro_avx2<1, 2>;
    k.micro[1][3] = micro_avx2<1, 3>;
    k.micro[1][4] = micro_avx2<1, 4>;
    k.micro[2][1] = micro_avx2<2, 1>;
    k.micro[2][2] = micro_avx2<2, 2>;
    k.micro[2][3] = micro_avx2<2, 3>;
    k.micro[2][4] = micro_avx2<2, 4>;
    k.widen = widen_avx2;
    return k;
  }
#endif
  k.micro[1][1] = micro_portable<1, 1>;
  k.micro[1][2] = micro_portable<1, 2>;
  k.micro[1][3] = micro_portable<1, 3>;
  k.micro[1][4] = micro_portable<1, 4>;
  k.micro[2][1] = micro_portable<2, 1>;
  k.micro[2][2] = micro_portable<2, 2>;
  k.micro[2][3] = micro_portable<2, 3>;
  k.micro[2][4] = micro_portable<2, 4>;
  k.widen = widen_portable;
  return k;
}

const Kernels& kernels() {
  static const Kernels k = make_kernels();
  return k;
}

// Weight rows [n0, n1) times all m input rows (x rows contiguous, stride xs).
void run_chunk(const float* x, int64_t xs, int m, const void* w, bool bf16, int64_t K,
               int64_t n0, int64_t n1, float* y, int64_t N) {
  const Kernels& kn = kernels();
  thread_local std::vector<float> scratch;
  if (bf16 && scratch.size() < static_cast<size_t>(kTile * K)) scratch.resize(kTile * K);
  for (int64_t n = n0; n < n1; n += kTile) {
    int J = static_cast<int>(std::min<int64_t>(kTile, n1 - n));
    const float* wr[kTile];
    for (int j = 0; j < J; ++j) {
      if (bf16) {
        float* dst = scratch.data() + j * K;
        kn.widen(static_cast<const uint16_t*>(w) + (n + j) * K, dst, K);
        wr[j] = dst;
      } else {
        wr[j] = static_cast<const float*>(w) + (n + j) * K;
      }
    }
    for (int r = 0; r < m; r += 2) {
      int R = std::min(2, m - r);
      const float* xr[2] = {x + r * xs, x + (r + R - 1) * xs};
      float* yr[2] = {y + r * N, y + (r + R - 1) * N};
      kn.micro[R][J](xr, wr, K, yr, static_cast<int>(n));
    }
  }
}

void skinny_gemm(const float* x, int64_t xs, int m, const void* w, bool bf16, int64_t K,
                 int64_t N, float* y) {
  if (m == 0 || N == 0) return;
  Pool& p = pool();
  int64_t work = N * std::max<int64_t>(K, 1);
  int threads = p.size();
  if (threads == 1 || work < (1 << 16)) {
    run_chunk(x, xs, m, w, bf16, K, 0, N, y, N);
    return;
  }
  // A few chunks per thread, each a whole number of tiles.
  int64_t chunks = std::min<int64_t>(threads * 4, (N + kTile - 1) / kTile);
  int64_t per = ((N + chunks - 1) / chunks + kTile - 1) / kTile * kTile;
  chunks = (N + per - 1) / per;
  std::function<void(int)> body = [&](int c) {
    int64_t n0 = c * per;
    int64_t n1 = std::min<int64_t>(N, n0 + per);
    run_chunk(x, xs, m, w, bf16, K, n0, n1, y, N);
  };
  p.run(static_cast<int>(chunks), body);
}

}  // namespace

std::string kernel_isa() { return cpu_has_avx2() ? "avx2" : "portable"; }

int kernel_threads() { return pool().size(); }

void set_kernel_threads(int n) { g_threads.store(n); }

mx::array skinny_matmul(const mx::array& x, const mx::array& w, mx::StreamOrDevice s) {
  if (w.ndim() != 2) throw std::invalid_argument("skinny_matmul: w must be [N, K]");
  if (x.ndim() < 1 || x.shape(-1) != w.shape(1)) {
    throw std::invalid_argument("skinny_matmul: x's last axis must match w's K");
  }
  if (w.dtype() != mx::float32 && w.dtype() != mx::bfloat16) {
    throw std::invalid_argument("skinny_matmul: w must be float32 or bfloat16");
  }
  auto stream = mx::to_stream(s);
  int K = w.shape(1);
  int N = w.shape(0);
  auto xf = mx::astype(x, mx::float32, stream);
  int64_t m = K > 0 ? static_cast<int64_t>(x.size()) / K : 0;
  if (K == 0) {
    m = 1;
    for (int i = 0; i + 1 < x.ndim(); ++i) m *= x.shape(i);
  }
  mx::Shape out_shape = x.shape();
  out_shape.back() = N;
  if (m > kMaxRows || stream.device != mx::Device::cpu) {
    return mx::matmul(xf, mx::transpose(mx::astype(w, mx::float32, stream), stream), stream);
  }
  auto x2 = mx::reshape(xf, {static_cast<int>(m), K}, stream);
  auto y = mx::array(mx::Shape{static_cast<int>(m), N}, mx::float32,
                     std::make_shared<SkinnyMatmul>(stream), {x2, w});
  return mx::reshape(y, out_shape, stream);
}

std::vector<mx::Shape> SkinnyMatmul::output_shapes(const std::vector<mx::array>& inputs) {
  return {mx::Shape{inputs[0].shape(0), inputs[1].shape(0)}};
}

void SkinnyMatmul::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error("SkinnyMatmul has no GPU implementation");
}

void SkinnyMatmul::eval_cpu(const std::vector<mx::array>& inputs,
                            std::vector<mx::array>& outputs) {
  const auto& x = inputs[0];
  const auto& w = inputs[1];
  auto& out = outputs[0];
  out.set_data(mx::allocator::malloc(out.nbytes()));
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.set_input_array(x);
  encoder.set_input_array(w);
  encoder.set_output_array(out);

  int m = x.shape(0);
  int64_t K = x.shape(1);
  int64_t N = w.shape(0);
  bool bf16 = w.dtype() == mx::bfloat16;
  encoder.dispatch([xp = x.data<float>(), xs0 = x.strides()[0], xs1 = x.strides()[1],
                    wp = static_cast<const void*>(w.data<char>()), ws0 = w.strides()[0],
                    ws1 = w.strides()[1], yp = out.data<float>(), m, K, N, bf16]() {
    // Inputs arrive with any strides; the kernel wants unit stride along K.
    std::vector<float> xbuf;
    const float* xr = xp;
    int64_t xs = xs0;
    if (K > 1 && xs1 != 1) {
      xbuf.resize(static_cast<size_t>(m) * K);
      for (int r = 0; r < m; ++r)
        for (int64_t k = 0; k < K; ++k) xbuf[r * K + k] = xp[r * xs0 + k * xs1];
      xr = xbuf.data();
      xs = K;
    }
    std::vector<char> wbuf;
    const void* wr = wp;
    if (!(ws0 == K && (ws1 == 1 || K <= 1))) {
      size_t item = bf16 ? 2 : 4;
      wbuf.resize(static_cast<size_t>(N) * K * item);
      const char* src = static_cast<const char*>(wp);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k)
          std::memcpy(wbuf.data() + (n * K + k) * item, src + (n * ws0 + k * ws1) * item, item);
      wr = wbuf.data();
    }
    skinny_gemm(xr, xs, m, wr, bf16, K, N, yp);
  });
}

}  // namespace lookahead
