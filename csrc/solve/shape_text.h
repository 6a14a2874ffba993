// A tensor's shape as error messages print it ("[2, 3]").
#pragma once

#include <ATen/core/Tensor.h>

#include <sstream>
#include <string>

namespace node_ext {

inline std::string shape_of(const at::Tensor& t) {
  std::ostringstream o;
  o << t.sizes();
  return o.str();
}

}  // namespace node_ext
