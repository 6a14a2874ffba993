#include "ops/op_checks.h"

#include <c10/util/Exception.h>

namespace node_ext {
namespace ops {

RowLayout check_state_and_step(const char* op, const at::Tensor& y, const at::Tensor& h) {
  TORCH_CHECK(y.scalar_type() == at::kFloat || y.scalar_type() == at::kDouble, "node_ext.", op,
              ": the state must be float32 or float64, got ", y.scalar_type());
  TORCH_CHECK(h.scalar_type() == at::kDouble, "node_ext.", op, ": h must be float64, got ", h.scalar_type());
  TORCH_CHECK(h.device() == y.device(), "node_ext.", op, ": h is on ", h.device(), " but the state is on ",
              y.device());
  TORCH_CHECK(h.dim() <= 1, "node_ext.", op, ": h must have shape () or (rows,), got ", h.sizes());
  if (h.dim() == 0) return {1, y.numel(), false};
  TORCH_CHECK(y.dim() >= 1 && y.size(0) == h.size(0), "node_ext.", op, ": a per-row h of shape ", h.sizes(),
              " needs a state whose first dimension is ", h.size(0), ", got state shape ", y.sizes());
  const int64_t rows = h.size(0);
  return {rows, rows == 0 ? 0 : y.numel() / rows, true};
}

void check_like(const char* op, const char* name, const at::Tensor& t, const at::Tensor& y) {
  TORCH_CHECK(t.sizes() == y.sizes(), "node_ext.", op, ": ", name, " has shape ", t.sizes(),
              " but the state has shape ", y.sizes());
  TORCH_CHECK(t.scalar_type() == y.scalar_type(), "node_ext.", op, ": ", name, " has dtype ", t.scalar_type(),
              " but the state has dtype ", y.scalar_type());
  TORCH_CHECK(t.device() == y.device(), "node_ext.", op, ": ", name, " is on ", t.device(),
              " but the state is on ", y.device());
}

std::vector<at::Tensor> check_terms(const char* op, const at::Tensor& y, at::TensorList k, size_t n_weights,
                                    const char* weights_name) {
  TORCH_CHECK(!k.empty() && k.size() <= static_cast<size_t>(kMaxTerms), "node_ext.", op, ": k must hold 1 to ",
              kMaxTerms, " tensors, got ", k.size());
  TORCH_CHECK(k.size() == n_weights, "node_ext.", op, ": k has ", k.size(), " tensors but ", weights_name, " has ",
              n_weights, " entries");
  std::vector<at::Tensor> out;
  out.reserve(k.size());
  for (size_t j = 0; j < k.size(); ++j) {
    const std::string name = "k[" + std::to_string(j) + "]";
    check_like(op, name.c_str(), k[j], y);
    out.push_back(k[j].contiguous());
  }
  return out;
}

void check_tolerance(const char* op, const char* name, const at::Tensor& tol, const at::Tensor& y) {
  TORCH_CHECK(tol.scalar_type() == at::kDouble, "node_ext.", op, ": ", name, " must be float64, got ",
              tol.scalar_type());
  TORCH_CHECK(tol.device() == y.device(), "node_ext.", op, ": ", name, " is on ", tol.device(),
              " but the state is on ", y.device());
  TORCH_CHECK(tol.dim() == 0 || tol.sizes() == y.sizes(), "node_ext.", op, ": ", name,
              " must be a scalar or have the state's shape ", y.sizes(), ", got ", tol.sizes());
}

std::vector<int64_t> resolve_groups(const char* op, at::IntArrayRef groups, const RowLayout& layout) {
  if (groups.empty()) {
    if (layout.per_row) return std::vector<int64_t>(static_cast<size_t>(layout.rows), layout.cols);
    return {layout.rows * layout.cols};
  }
  int64_t total = 0;
  for (int64_t g : groups) {
    TORCH_CHECK(g >= 0, "node_ext.", op, ": groups must be non-negative sizes, got ", groups);
    total += g;
  }
  TORCH_CHECK(total == layout.rows * layout.cols, "node_ext.", op, ": groups ", groups, " sum to ", total,
              " but the state has ", layout.rows * layout.cols, " elements");
  return groups.vec();
}

StepSizeArg step_size_arg(const at::Tensor& h_contiguous) {
  return {h_contiguous.data_ptr<double>(), h_contiguous.dim() == 1};
}

}  // namespace ops
}  // namespace node_ext
