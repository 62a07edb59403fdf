// oneDNN convolutions as XLA FFI handlers, for the CPU backend (gap_jax/cpu/onednn.py builds and loads this
// file). NHWC activations, HWIO kernels, stride 1, the same padding on every side, a kernel dilation, float32
// or bfloat16 (all three buffers of a call alike): what gap_jax.models.layers.Conv computes.
//
// Every primitive runs with a scratchpad that this file allocates for the call (scratchpad_mode::user).
// oneDNN's default, a library-managed scratchpad, is in this build (concurrent execution off) one global
// buffer per thread, sized when a primitive is created; XLA runs each call on whichever of its threads is
// free, so a primitive created on one thread and run on another wrote past a buffer sized for others (a
// segfault in gemm convolution's im2col on AVX2 CPUs). With a scratchpad per call, no primitive depends on
// the thread that runs it.
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Attributes of every primitive here: the caller provides the scratchpad (see the top of the file).
const dnnl::primitive_attr& UserScratchpad() {
  static const dnnl::primitive_attr attr = [] {
    dnnl::primitive_attr a;
    a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    return a;
  }();
  return attr;
}

// A scratchpad for one execution of a primitive described by pd (empty when it needs none).
memory ScratchpadFor(const dnnl::primitive_desc_base& pd) { return memory(pd.scratchpad_desc(), Engine()); }

// The three primitives of one convolution shape. The kernel layout is left to oneDNN (`any`): its fast
// kernels want a blocked layout, reached by a reorder of the (small) kernel at each call.
struct Conv {
  memory::desc x, y, w_hwio;
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights_pd;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights bwd_weights;
};

// Keyed by (batch, height, width, in channels, out channels, kernel size, padding, dilation, data type).
using Shape = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, memory::data_type>;

const Conv& ConvFor(const Shape& s) {
  static std::mutex mu;
  static std::map<Shape, std::unique_ptr<Conv>> cache;  // primitive creation JIT-compiles: once per shape
  std::lock_guard<std::mutex> lock(mu);
  std::unique_ptr<Conv>& conv = cache[s];
  if (conv) return *conv;
  auto [b, h, w, c, f, k, p, d, dt] = s;
  const int64_t ho = h + 2 * p - d * (k - 1), wo = w + 2 * p - d * (k - 1);
  using tag = memory::format_tag;
  auto cv = std::make_unique<Conv>();
  cv->x = memory::desc({b, c, h, w}, dt, tag::nhwc);
  cv->y = memory::desc({b, f, ho, wo}, dt, tag::nhwc);
  cv->w_hwio = memory::desc({f, c, k, k}, dt, tag::hwio);
  const memory::desc w_any({f, c, k, k}, dt, tag::any);
  const memory::dims strides{1, 1}, pad{p, p}, dilates{d - 1, d - 1};  // oneDNN counts the gaps
  const auto direct = dnnl::algorithm::convolution_direct;
  auto& e = Engine();
  const auto& attr = UserScratchpad();
  cv->fwd_pd = dnnl::convolution_forward::primitive_desc(
      e, dnnl::prop_kind::forward_training, direct, cv->x, w_any, cv->y, strides, dilates, pad, pad, attr);
  cv->bwd_data_pd = dnnl::convolution_backward_data::primitive_desc(
      e, direct, cv->x, w_any, cv->y, strides, dilates, pad, pad, cv->fwd_pd, attr);
  cv->bwd_weights_pd = dnnl::convolution_backward_weights::primitive_desc(
      e, direct, cv->x, w_any, cv->y, strides, dilates, pad, pad, cv->fwd_pd, attr);
  cv->fwd = dnnl::convolution_forward(cv->fwd_pd);
  cv->bwd_data = dnnl::convolution_backward_data(cv->bwd_data_pd);
  cv->bwd_weights = dnnl::convolution_backward_weights(cv->bwd_weights_pd);
  conv = std::move(cv);
  return *conv;
}

// Copies src into dst's layout, with its own scratchpad.
void Reorder(dnnl::stream& s, memory& src, memory& dst) {
  const dnnl::reorder::primitive_desc pd(src, dst, UserScratchpad());
  dnnl::reorder(pd).execute(s, {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}, {DNNL_ARG_SCRATCHPAD, ScratchpadFor(pd)}});
}

// The kernel in the layout a primitive wants: the caller's HWIO buffer itself, or a reordered copy.
memory KernelAs(dnnl::stream& s, const memory::desc& hwio, const memory::desc& want, void* data) {
  memory user(hwio, Engine(), data);
  if (want == hwio) return user;
  memory reordered(want, Engine());
  Reorder(s, user, reordered);
  return reordered;
}

using Buffer = ffi::AnyBuffer;
using Result = ffi::Result<ffi::AnyBuffer>;

ffi::Error Invalid(const char* what) {
  return ffi::Error::InvalidArgument(std::string("oneDNN convolution: ") + what);
}

// The shape of a convolution of x (B, H, W, C) with a (k, k, C, F) kernel, after checking that y is its
// output (B, H + 2p - d(k - 1), W + 2p - d(k - 1), F) and that all three share one supported data type:
// the buffers' sizes are trusted from here on.
ffi::ErrorOr<Shape> Checked(const Buffer& x_buf, const Buffer& kernel_buf, const Buffer& y_buf, int64_t pad,
                            int64_t dilation) {
  const ffi::DataType type = x_buf.element_type();
  if (kernel_buf.element_type() != type || y_buf.element_type() != type) {
    return ffi::Unexpected(Invalid("x, the kernel and y must share one data type"));
  }
  if (type != ffi::DataType::F32 && type != ffi::DataType::BF16) {
    return ffi::Unexpected(Invalid("only float32 and bfloat16 are supported"));
  }
  auto x = x_buf.dimensions(), kernel = kernel_buf.dimensions(), y = y_buf.dimensions();
  if (x.size() != 4 || kernel.size() != 4 || y.size() != 4) {
    return ffi::Unexpected(Invalid("x, the kernel and y must be 4-D (NHWC, HWIO, NHWC)"));
  }
  const int64_t k = kernel[0], span = dilation * (k - 1);
  const bool ok = kernel[1] == k && kernel[2] == x[3] && pad >= 0 && dilation >= 1 && y[0] == x[0] &&
                  y[1] == x[1] + 2 * pad - span && y[2] == x[2] + 2 * pad - span && y[3] == kernel[3] &&
                  y[1] > 0 && y[2] > 0;
  if (!ok) {
    return ffi::Unexpected(Invalid(
        "expected x (B, H, W, C), a square kernel (k, k, C, F) and y (B, H + 2p - d(k - 1), "
        "W + 2p - d(k - 1), F) for padding p >= 0 and dilation d >= 1; the shapes do not fit together"));
  }
  const auto dt = type == ffi::DataType::F32 ? memory::data_type::f32 : memory::data_type::bf16;
  return Shape{x[0], x[1], x[2], x[3], kernel[3], k, pad, dilation, dt};
}

// One oneDNN call at a time. XLA runs independent thunks (a layer's input and kernel gradients) on two
// threads at once; two concurrent calls, each forking an OpenMP team, hung in a kernel gradient's spin
// barrier (tests/test_experiments.py, RFNet), and each call uses every core anyway.
std::mutex& CallMutex() {
  static std::mutex mu;
  return mu;
}

// Runs body(primitives, stream) for a checked shape, one call at a time, and waits for it. oneDNN reports
// failures as exceptions; XLA wants an error status (an exception would abort the process).
template <typename F>
ffi::Error Run(const ffi::ErrorOr<Shape>& shape, F&& body) {
  if (shape.has_error()) return shape.error();
  std::lock_guard<std::mutex> lock(CallMutex());
  try {
    dnnl::stream s(Engine());
    body(ConvFor(shape.value()), s);
    s.wait();
    return ffi::Error::Success();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN convolution: ") + e.what());
  }
}

// The data of a buffer, for oneDNN (which takes non-const pointers for its inputs too).
void* Data(const Buffer& b) { return b.untyped_data(); }
void* Data(Result& r) { return r->untyped_data(); }

ffi::Error Forward(Buffer x, Buffer kernel, Result y, int64_t pad, int64_t dilation) {
  return Run(Checked(x, kernel, *y, pad, dilation), [&](const Conv& cv, dnnl::stream& s) {
    memory w = KernelAs(s, cv.w_hwio, cv.fwd_pd.weights_desc(), Data(kernel));
    cv.fwd.execute(s, {{DNNL_ARG_SRC, memory(cv.x, Engine(), Data(x))},
                       {DNNL_ARG_SCRATCHPAD, ScratchpadFor(cv.fwd_pd)},
                       {DNNL_ARG_WEIGHTS, w},
                       {DNNL_ARG_DST, memory(cv.y, Engine(), Data(y))}});
  });
}

ffi::Error InputGradient(Buffer dy, Buffer kernel, Result dx, int64_t pad, int64_t dilation) {
  return Run(Checked(*dx, kernel, dy, pad, dilation), [&](const Conv& cv, dnnl::stream& s) {
    memory w = KernelAs(s, cv.w_hwio, cv.bwd_data_pd.weights_desc(), Data(kernel));
    cv.bwd_data.execute(s, {{DNNL_ARG_DIFF_DST, memory(cv.y, Engine(), Data(dy))},
                            {DNNL_ARG_SCRATCHPAD, ScratchpadFor(cv.bwd_data_pd)},
                            {DNNL_ARG_WEIGHTS, w},
                            {DNNL_ARG_DIFF_SRC, memory(cv.x, Engine(), Data(dx))}});
  });
}

ffi::Error KernelGradient(Buffer x, Buffer dy, Result dkernel, int64_t pad, int64_t dilation) {
  return Run(Checked(x, *dkernel, dy, pad, dilation), [&](const Conv& cv, dnnl::stream& s) {
    memory user(cv.w_hwio, Engine(), Data(dkernel));
    const memory::desc want = cv.bwd_weights_pd.diff_weights_desc();
    memory dw = want == cv.w_hwio ? user : memory(want, Engine());
    cv.bwd_weights.execute(s, {{DNNL_ARG_SRC, memory(cv.x, Engine(), Data(x))},
                               {DNNL_ARG_SCRATCHPAD, ScratchpadFor(cv.bwd_weights_pd)},
                               {DNNL_ARG_DIFF_DST, memory(cv.y, Engine(), Data(dy))},
                               {DNNL_ARG_DIFF_WEIGHTS, dw}});
    if (!(want == cv.w_hwio)) Reorder(s, dw, user);
  });
}

}  // namespace

// The names of the implementations oneDNN picks for a convolution shape (its impl_info_str), forward,
// backward-data and backward-weights, as "fwd;bwd_data;bwd_weights" in out. Returns 0, or -1 with oneDNN's
// message in out. onednn.py sends to XLA every shape whose implementations the tests have not verified.
extern "C" int GapJaxConvImplementations(int64_t b, int64_t h, int64_t w, int64_t c, int64_t f, int64_t k,
                                         int64_t pad, int64_t dilation, int bf16, char* out, int64_t size) {
  std::string text;
  int status = 0;
  try {
    const auto dt = bf16 ? memory::data_type::bf16 : memory::data_type::f32;
    const Conv& cv = ConvFor(Shape{b, h, w, c, f, k, pad, dilation, dt});
    text = std::string(cv.fwd_pd.impl_info_str()) + ";" + cv.bwd_data_pd.impl_info_str() + ";" +
           cv.bwd_weights_pd.impl_info_str();
  } catch (const dnnl::error& e) {
    text = e.what();
    status = -1;
  }
  snprintf(out, size, "%s", text.c_str());
  return status;
}

// oneDNN's effective instruction set on this CPU (under ONEDNN_MAX_CPU_ISA, if set), the best of those that
// choose its convolution kernels: "avx512_core_amx", "avx512_core_bf16", "avx512_core", "avx2", "sse41", or "".
extern "C" const char* GapJaxCpuIsa() {
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto has = [isa](dnnl::cpu_isa want) {
    const auto bits = static_cast<unsigned>(want);
    return (isa & bits) == bits;
  };
  if (has(dnnl::cpu_isa::avx512_core_amx)) return "avx512_core_amx";
  if (has(dnnl::cpu_isa::avx512_core_bf16)) return "avx512_core_bf16";
  if (has(dnnl::cpu_isa::avx512_core)) return "avx512_core";
  if (has(dnnl::cpu_isa::avx2)) return "avx2";
  if (has(dnnl::cpu_isa::sse41)) return "sse41";
  return "";
}

#define GAP_JAX_CONV_HANDLER(name, impl)                                                    \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, impl,                                                 \
                                ffi::Ffi::Bind()                                            \
                                    .Arg<Buffer>()                                          \
                                    .Arg<Buffer>()                                          \
                                    .Ret<Buffer>()                                          \
                                    .Attr<int64_t>("pad")                                   \
                                    .Attr<int64_t>("dilation"))

GAP_JAX_CONV_HANDLER(GapJaxConvForward, Forward);
GAP_JAX_CONV_HANDLER(GapJaxConvInputGradient, InputGradient);
GAP_JAX_CONV_HANDLER(GapJaxConvKernelGradient, KernelGradient);
