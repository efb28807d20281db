// Python bindings for the skinny matmul (module engine.native._skinny).
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/variant.h>

#include "skinny_matmul.h"

namespace nb = nanobind;
using namespace nb::literals;

NB_MODULE(_skinny, m) {
  m.doc() = "y = x @ w.T for inputs of at most 16 rows, inside MLX's lazy graph (CPU).";
  m.def("skinny_matmul", &lookahead::skinny_matmul, "x"_a, "w"_a, nb::kw_only(),
        "stream"_a = nb::none(),
        "x [..., K] @ w[N, K].T -> [..., N] float32; w float32 or bfloat16.");
  m.def("kernel_isa", &lookahead::kernel_isa, "The inner loop this CPU runs: avx2 or portable.");
  m.def("kernel_threads", &lookahead::kernel_threads, "Threads one call is split over.");
  m.def("set_kernel_threads", &lookahead::set_kernel_threads, "n"_a,
        "Split calls over n threads (0: one per core).");
  m.attr("MAX_ROWS") = lookahead::kMaxRows;
}
