// Reusable tensors for the loop's fast path (no autograd): stage inputs, new states, times.
//
// A pooled tensor is handed out again only when nothing but the pool refers to it: no loop
// variable, no Python object the user kept, no view of its storage, no autograd graph that saved
// it (all of which hold a reference to the tensor or its storage), and it does not require grad.
// Handing pooled buffers to the user's dynamics is therefore as safe as handing fresh tensors,
// without an allocation per stage.
#pragma once

#include <ATen/ATen.h>

#include <type_traits>
#include <vector>

namespace node_ext {

namespace detail {

template <typename Slot, typename = void>
struct HasUniqueReference : std::false_type {};
template <typename Slot>
struct HasUniqueReference<Slot, std::void_t<decltype(std::declval<const Slot&>().has_unique_reference())>>
    : std::true_type {};

// True when `t` (held by the caller) is referenced by nothing else. A tensor that was passed to
// Python keeps its Python object, which holds one reference; the tensor is still ours when that
// object is referenced only by the tensor itself (torch's PyObject preservation). Torch versions
// without PyObjectSlot::has_unique_reference never reuse a tensor that has a Python object.
// Optional fast answer to "is this Python object referenced only once?", installed by the Python
// bindings (a plain Py_REFCNT read: the loop runs holding the GIL). Without it, torch's
// PyObjectSlot::has_unique_reference is used, which goes through its interpreter vtable.
using UniquePyObjectFn = bool (*)(void* pyobj);
inline UniquePyObjectFn& unique_pyobject_hook() {
  static UniquePyObjectFn hook = nullptr;
  return hook;
}

template <typename Slot = c10::impl::PyObjectSlot>
bool exclusively_held(const at::Tensor& t) {
  const size_t uses = t.use_count();
  if (uses > 2 || t.storage().use_count() != 1) return false;  // held elsewhere, or a view shares the storage
  const Slot* slot = t.unsafeGetTensorImpl()->pyobj_slot();
  void* pyobj = slot->load_pyobj();
  if (pyobj == nullptr) return uses == 1;
  if (uses != 2) return false;  // the pool's reference and the Python object's
  if (UniquePyObjectFn hook = unique_pyobject_hook()) return hook(pyobj);
  if constexpr (HasUniqueReference<Slot>::value) {
    return slot->has_unique_reference();
  } else {
    return false;
  }
}

}  // namespace detail

class TensorPool {
 public:
  TensorPool() = default;
  TensorPool(at::Tensor like, size_t capacity) : like_(std::move(like)), capacity_(capacity) {}

  at::Tensor acquire() {
    for (size_t i = 0; i < items_.size(); ++i) {
      at::Tensor& t = items_[i];
      if (!detail::exclusively_held(t)) continue;
      if (t.requires_grad()) {  // flagged by the user's code: retire it
        items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(i));
        --i;
        continue;
      }
      return t;
    }
    at::Tensor t = at::empty_like(like_, at::MemoryFormat::Contiguous);
    if (items_.size() < capacity_) items_.push_back(t);
    return t;
  }

 private:
  at::Tensor like_;
  size_t capacity_ = 0;
  std::vector<at::Tensor> items_;
};

}  // namespace node_ext
