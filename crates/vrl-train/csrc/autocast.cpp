// Autocast controls that tch 0.24's C API lacks: the device type (CPU or CUDA) and the dtype.
//
// Every function catches C++ exceptions and returns them as a message: on failure the return value is
// a heap string (free it with vrl_autocast_free_error), on success NULL. No exception crosses into Rust.

#include <ATen/autocast_mode.h>

#include <cstdlib>
#include <cstring>
#include <exception>

namespace {

char *dup_message(const char *what) {
  size_t n = std::strlen(what);
  char *out = static_cast<char *>(std::malloc(n + 1));
  if (out != nullptr) std::memcpy(out, what, n + 1);
  return out;
}

// device: 0 = CPU, 1 = CUDA.
bool device_type(int device, at::DeviceType *out) {
  switch (device) {
    case 0: *out = at::kCPU; return true;
    case 1: *out = at::kCUDA; return true;
    default: return false;
  }
}

// dtype: 0 = Float, 1 = BFloat16, 2 = Half.
bool scalar_type(int dtype, at::ScalarType *out) {
  switch (dtype) {
    case 0: *out = at::kFloat; return true;
    case 1: *out = at::kBFloat16; return true;
    case 2: *out = at::kHalf; return true;
    default: return false;
  }
}

int dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return 0;
    case at::kBFloat16: return 1;
    case at::kHalf: return 2;
    default: return -1;
  }
}

}  // namespace

#define VRL_TRY(body)                                             \
  try {                                                           \
    body;                                                         \
    return nullptr;                                               \
  } catch (const std::exception &e) {                             \
    return dup_message(e.what());                                 \
  } catch (...) {                                                 \
    return dup_message("unknown C++ exception");                  \
  }

extern "C" {

void vrl_autocast_free_error(char *message) { std::free(message); }

// Writes whether autocast is enabled for `device` and its dtype code (-1: another dtype).
char *vrl_autocast_get(int device, int *enabled, int *dtype) {
  VRL_TRY({
    at::DeviceType d;
    if (!device_type(device, &d)) return dup_message("unknown device code");
    *enabled = at::autocast::is_autocast_enabled(d) ? 1 : 0;
    *dtype = dtype_code(at::autocast::get_autocast_dtype(d));
  })
}

// Enables or disables autocast for `device`; sets its dtype unless `dtype` is -1.
char *vrl_autocast_set(int device, int enabled, int dtype) {
  VRL_TRY({
    at::DeviceType d;
    if (!device_type(device, &d)) return dup_message("unknown device code");
    if (dtype >= 0) {
      at::ScalarType t;
      if (!scalar_type(dtype, &t)) return dup_message("unknown dtype code");
      at::autocast::set_autocast_dtype(d, t);
    }
    at::autocast::set_autocast_enabled(d, enabled != 0);
  })
}

// Increments the autocast nesting counter; writes the new depth.
char *vrl_autocast_increment_nesting(int *depth) {
  VRL_TRY({ *depth = at::autocast::increment_nesting(); })
}

// Decrements the nesting counter and writes the new depth; clears the cast cache when it reaches 0.
char *vrl_autocast_decrement_nesting(int *depth) {
  VRL_TRY({
    int n = at::autocast::decrement_nesting();
    *depth = n;
    if (n == 0) at::autocast::clear_cache();
  })
}

}  // extern "C"
