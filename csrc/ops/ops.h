// The node_ext tensor ops (schemas in registration.cpp). Each op has one device-generic kernel
// (it validates, fills the kernel parameters and runs the CPU or CUDA kernel through
// kernels/dispatch.h) and one C++ autograd kernel. call_* go through the dispatcher, so autograd
// (and any other dispatch key) applies; the solve loop uses them when gradients are recorded.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace node_ext {
namespace ops {

at::Tensor rk_stage_kernel(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> w, const at::Tensor& h);
std::tuple<at::Tensor, at::Tensor> rk_step_kernel(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> b,
                                                  at::ArrayRef<double> b_err, const at::Tensor& h,
                                                  const at::Tensor& rtol, const at::Tensor& atol,
                                                  at::IntArrayRef groups);
at::Tensor rk_error_norm_kernel(const at::Tensor& y, const at::Tensor& y_new, at::TensorList k,
                                at::ArrayRef<double> b_err, const at::Tensor& h, const at::Tensor& rtol,
                                const at::Tensor& atol, at::IntArrayRef groups);
at::Tensor rk_interp_kernel(const at::Tensor& y0, at::TensorList k, const at::Tensor& h, const at::Tensor& theta,
                            at::ArrayRef<double> poly, int64_t degree);

at::Tensor call_rk_stage(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> w, const at::Tensor& h);
std::tuple<at::Tensor, at::Tensor> call_rk_step(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> b,
                                                at::ArrayRef<double> b_err, const at::Tensor& h,
                                                const at::Tensor& rtol, const at::Tensor& atol,
                                                at::IntArrayRef groups);
at::Tensor call_rk_error_norm(const at::Tensor& y, const at::Tensor& y_new, at::TensorList k,
                              at::ArrayRef<double> b_err, const at::Tensor& h, const at::Tensor& rtol,
                              const at::Tensor& atol, at::IntArrayRef groups);
at::Tensor call_rk_interp(const at::Tensor& y0, at::TensorList k, const at::Tensor& h, const at::Tensor& theta,
                          at::ArrayRef<double> poly, int64_t degree);

}  // namespace ops
}  // namespace node_ext
