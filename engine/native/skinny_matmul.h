// A CPU matmul for skinny inputs: y[m, N] = x[m, K] @ W[N, K]^T with m <= 16.
//
// Decoding and verification multiply a handful of rows by every weight matrix.
// BLAS packs the whole weight matrix for such calls; this kernel streams each
// weight row once per call for all m rows instead, with no packing. Weights may be
// float32 or bfloat16 (widened in registers); accumulation is float32. Each output
// is computed by the same sequence of operations whatever m, the thread split or
// the row's position, so a row's result does not depend on the rows beside it.
#pragma once

#include <string>

#include "mlx/ops.h"
#include "mlx/primitives.h"

namespace lookahead {

namespace mx = mlx::core;

constexpr int kMaxRows = 16;

// x: [..., K] float32; w: [N, K] float32 or bfloat16. Returns [..., N] float32.
mx::array skinny_matmul(const mx::array& x, const mx::array& w, mx::StreamOrDevice s = {});

// Which inner loop runs on this CPU: "avx2" or "portable".
std::string kernel_isa();
int kernel_threads();
void set_kernel_threads(int n);

class SkinnyMatmul : public mx::Primitive {
 public:
  explicit SkinnyMatmul(mx::Stream stream) : mx::Primitive(stream) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  void eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  const char* name() const override { return "SkinnyMatmul"; }
  bool is_equivalent(const mx::Primitive& other) const override { return true; }
};

}  // namespace lookahead
