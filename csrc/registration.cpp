// Every node_ext op schema, in one place. Kernels are registered beside each op (csrc/ops/);
// fake (meta) kernels for torch.compile / FakeTensor live in node_ext/_ops.py.
#include <torch/library.h>

TORCH_LIBRARY(node_ext, m) {
  // y + h * sum_j w_j k_j; h has shape () or (rows,) (one step per row of the state).
  m.def("rk_stage(Tensor y, Tensor[] k, float[] w, Tensor h) -> Tensor", {at::Tag::pt2_compliant_tag});
  // (y_new, error norm per group); groups [] = one per row (per-row h) or one for the state.
  m.def(
      "rk_step(Tensor y, Tensor[] k, float[] b, float[] b_err, Tensor h, Tensor rtol, Tensor atol, "
      "int[] groups) -> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "rk_error_norm(Tensor y, Tensor y_new, Tensor[] k, float[] b_err, Tensor h, Tensor rtol, Tensor atol, "
      "int[] groups) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  // Continuous extension at theta (M,) or (M, rows): output (M, *y0.shape).
  m.def("rk_interp(Tensor y0, Tensor[] k, Tensor h, Tensor theta, float[] poly, int degree) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}
