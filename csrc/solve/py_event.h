// An event function backed by a Python callable event_fn(t, y) (y a tensor, or a tuple of tensors
// unpacked from the flat state). It is called without recording a graph.
#pragma once

#include <torch/extension.h>

#include <vector>

#include "solve/event.h"

namespace node_ext {

class PyEventFunction : public EventFunction {
 public:
  PyEventFunction(pybind11::object fn, std::vector<std::vector<int64_t>> tuple_shapes);
  at::Tensor operator()(const at::Tensor& t, const at::Tensor& y) override;

 private:
  pybind11::object fn_;
  std::vector<std::vector<int64_t>> shapes_;
  std::vector<int64_t> sizes_;
};

}  // namespace node_ext
