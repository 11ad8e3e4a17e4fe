// pybind11 module `jointvae_emulated_cuda` (tests only): the launchers of kernels/cuda, run by the CPU emulation,
// on NumPy arrays. Inputs are float32 or float64 [rows, cols] with unit column stride and any row stride (the
// leading dimension); outputs are new contiguous arrays, pre-filled with NaN so an entry no thread wrote shows.
// A failed launch raises LaunchError; last_launch() says what the last launch asked for.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/latent_cuda.h"

namespace py = pybind11;
using namespace jointvae;

namespace {

struct LaunchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  const auto& r = emulation::last_launch();
  const std::string why = r.error == e ? " (" + r.kernel + ": " + r.message + ")" : " (refused by the launcher)";
  throw LaunchError(std::string(what) + ": " + cudaGetErrorString(e) + why);
}

template <typename T>
struct Rows {
  const T* p;
  int64_t rows, cols, ld;
};

// A [rows, cols] view with unit column stride; ld from the row stride.
template <typename T>
Rows<T> rows_of(const py::array& a, const char* name, int64_t rows, int64_t cols) {
  if (!a.dtype().is(py::dtype::of<T>())) throw py::type_error(std::string(name) + ": dtype must match mu's");
  if (a.ndim() != 2 || (rows >= 0 && a.shape(0) != rows) || (cols >= 0 && a.shape(1) != cols))
    throw py::value_error(std::string(name) + ": wrong shape");
  const int64_t isz = static_cast<int64_t>(sizeof(T));
  if ((a.shape(1) > 1 && a.strides(1) != isz) || a.strides(0) < 0 || a.strides(0) % isz != 0)
    throw py::value_error(std::string(name) + ": needs unit column stride and a non-negative row stride");
  return Rows<T>{static_cast<const T*>(a.data()), a.shape(0), a.shape(1), a.strides(0) / isz};
}

template <typename T>
py::array_t<T> nan_array(std::vector<py::ssize_t> shape) {
  py::array_t<T> out(shape);
  T* p = out.mutable_data();
  for (py::ssize_t i = 0; i < out.size(); ++i) p[i] = std::numeric_limits<T>::quiet_NaN();
  return out;
}

DiscLayout layout(const std::vector<int>& dims) {
  if (dims.size() > static_cast<size_t>(kMaxDiscVars)) throw py::value_error("disc_dims: at most 64 variables");
  DiscLayout d{};
  d.num_vars = static_cast<int32_t>(dims.size());
  for (size_t v = 0; v < dims.size(); ++v) {
    if (dims[v] < 1) throw py::value_error("disc_dims: sizes must be positive");
    d.dims[v] = dims[v];
    d.off[v] = d.total;
    d.total += dims[v];
  }
  return d;
}

// mu, logvar [B, D] and logits [B, sum K]: the KLArgs of kl_forward/kl_backward and the base of SampleLatentArgs.
template <typename T>
LatentView<T> latent_view(const py::array& mu, const py::array& logvar, const py::array& logits,
                          const DiscLayout& disc) {
  const Rows<T> m = rows_of<T>(mu, "mu", -1, -1);
  const Rows<T> lv = rows_of<T>(logvar, "logvar", m.rows, m.cols);
  const Rows<T> lg = rows_of<T>(logits, "logits", m.rows, disc.total);
  return LatentView<T>{m.rows, m.cols, disc, m.p, m.ld, lv.p, lv.ld, lg.p, lg.ld};
}

template <typename T>
py::tuple sample_latent(const py::array& mu, const py::array& logvar, const py::array& logits,
                        const std::vector<int>& dims, double tau, bool training, std::optional<py::array> eps,
                        std::optional<py::array> u, uint64_t seed, uint64_t offset,
                        std::optional<uint64_t> intragraph) {
  const DiscLayout disc = layout(dims);
  SampleLatentArgs<T> a{};
  static_cast<LatentView<T>&>(a) = latent_view<T>(mu, logvar, logits, disc);
  const int64_t B = a.B, D = a.D, K = disc.total;
  a.tau = static_cast<T>(tau), a.training = training;
  if (eps) {
    const Rows<T> e = rows_of<T>(*eps, "eps", B, D);
    a.eps = e.p, a.ld_eps = e.ld;
  }
  if (u) {
    const Rows<T> r = rows_of<T>(*u, "u", B, K);
    a.u = r.p, a.ld_u = r.ld;
  }
  auto latent = nan_array<T>({B, D + K}), sigma_eps = nan_array<T>({B, D});
  py::array_t<int64_t> state({2});
  state.mutable_at(0) = -1;
  state.mutable_at(1) = -1;
  a.latent = latent.mutable_data(), a.sigma_eps = sigma_eps.mutable_data();
  const int64_t seed_v = static_cast<int64_t>(seed), offset_v = static_cast<int64_t>(offset);
  PhiloxArgs rng{};
  if (intragraph) {  // graph-capture form: seed and offset read through device pointers
    rng.captured = true, rng.seed_ptr = &seed_v, rng.offset_ptr = &offset_v, rng.offset_intragraph = *intragraph;
  } else {
    rng.seed = seed, rng.offset = offset;
  }
  int64_t* st = state.mutable_data();
  cudaError_t e;
  {
    py::gil_scoped_release release;
    e = cuda::sample_latent<T>(a, rng, st, nullptr);
  }
  check(e, "sample_latent");
  return py::make_tuple(latent, sigma_eps, state);
}

template <typename T>
py::tuple sample_latent_backward(const py::array& grad, const py::array& latent, const py::array& sigma_eps,
                                 const std::vector<int>& dims, double tau, bool training) {
  const DiscLayout disc = layout(dims);
  const Rows<T> se = rows_of<T>(sigma_eps, "sigma_eps", -1, -1);
  const int64_t B = se.rows, D = se.cols, K = disc.total;
  const Rows<T> g = rows_of<T>(grad, "grad", B, D + K);
  const Rows<T> lat = rows_of<T>(latent, "latent", B, D + K);
  if (lat.ld != D + K || se.ld != D) throw py::value_error("latent and sigma_eps must be contiguous");
  auto dmu = nan_array<T>({B, D}), dlv = nan_array<T>({B, D}), dl = nan_array<T>({B, K});
  SampleLatentBackwardArgs<T> a{};  // by field: members may be added (value-initialised here)
  a.B = B, a.D = D, a.disc = disc, a.tau = static_cast<T>(tau), a.training = training;
  a.grad = g.p, a.ld_grad = g.ld, a.latent = lat.p, a.sigma_eps = se.p;
  a.dmu = dmu.mutable_data(), a.dlogvar = dlv.mutable_data(), a.dlogits = dl.mutable_data();
  cudaError_t e;
  {
    py::gil_scoped_release release;
    e = cuda::sample_latent_backward<T>(a, nullptr);
  }
  check(e, "sample_latent_backward");
  return py::make_tuple(dmu, dlv, dl);
}

template <typename T>
py::tuple kl_forward(const py::array& mu, const py::array& logvar, const py::array& logits,
                     const std::vector<int>& dims, double c_cont, double c_disc, double g_cont, double g_disc) {
  const KLArgs<T> a = latent_view<T>(mu, logvar, logits, layout(dims));
  const int64_t D = a.D, V = a.disc.num_vars;
  std::vector<double> work(static_cast<size_t>(cuda::kl_workspace_doubles(a.B, D + V)),
                           std::numeric_limits<double>::quiet_NaN());
  unsigned counter = 0;
  auto loss = nan_array<T>({}), kc = nan_array<T>({D}), kd = nan_array<T>({V});
  cudaError_t e;
  {
    py::gil_scoped_release release;
    e = cuda::kl_forward<T>(a, KLConstants{c_cont, c_disc, g_cont, g_disc}, work.data(), &counter,
                            loss.mutable_data(), kc.mutable_data(), kd.mutable_data(), nullptr);
  }
  check(e, "kl_forward");
  return py::make_tuple(loss, kc, kd, counter);
}

template <typename T>
py::tuple kl_backward(const py::array& mu, const py::array& logvar, const py::array& logits,
                      const std::vector<int>& dims, double c_cont, double c_disc, double g_cont, double g_disc,
                      const py::array& kl_cont, const py::array& kl_disc, double grad_loss,
                      std::optional<py::array> grad_kl_cont, std::optional<py::array> grad_kl_disc) {
  const KLArgs<T> a = latent_view<T>(mu, logvar, logits, layout(dims));
  const int64_t B = a.B, D = a.D, V = a.disc.num_vars, K = a.disc.total;
  auto vec = [](const py::array& x, const char* name, int64_t n) {
    return rows_of<T>(py::array(x).reshape({int64_t(1), n}), name, 1, n).p;
  };
  const T* kc = vec(kl_cont, "kl_cont", D);
  const T* kd = vec(kl_disc, "kl_disc", V);
  const T* gkc = grad_kl_cont ? vec(*grad_kl_cont, "grad_kl_cont", D) : nullptr;
  const T* gkd = grad_kl_disc ? vec(*grad_kl_disc, "grad_kl_disc", V) : nullptr;
  const T gl = static_cast<T>(grad_loss);
  auto dmu = nan_array<T>({B, D}), dlv = nan_array<T>({B, D}), dl = nan_array<T>({B, K});
  cudaError_t e;
  {
    py::gil_scoped_release release;
    e = cuda::kl_backward<T>(a, KLConstants{c_cont, c_disc, g_cont, g_disc}, kc, kd, &gl, gkc, gkd,
                             dmu.mutable_data(), dlv.mutable_data(), dl.mutable_data(), nullptr);
  }
  check(e, "kl_backward");
  return py::make_tuple(dmu, dlv, dl);
}

template <typename T>
AggregateArgs<T> aggregate_args(const py::array& logits, const std::vector<int>& dims) {
  const DiscLayout disc = layout(dims);
  const Rows<T> lg = rows_of<T>(logits, "logits", -1, disc.total);
  AggregateArgs<T> a{};  // by field: members may be added
  a.B = lg.rows, a.disc = disc, a.logits = lg.p, a.ld_logits = lg.ld;
  return a;
}

template <typename T>
py::tuple aggregate_kl_forward(const py::array& logits, const std::vector<int>& dims) {
  const AggregateArgs<T> a = aggregate_args<T>(logits, dims);
  const int64_t N = a.disc.total;
  std::vector<double> work(static_cast<size_t>(cuda::kl_workspace_doubles(a.B, N)),
                           std::numeric_limits<double>::quiet_NaN());
  std::vector<T> q(static_cast<size_t>(a.B * N), std::numeric_limits<T>::quiet_NaN());
  unsigned counter = 0;
  auto agg = nan_array<T>({static_cast<int64_t>(a.disc.num_vars)}), qbar = nan_array<T>({N});
  cudaError_t e;
  {
    py::gil_scoped_release release;
    e = cuda::aggregate_kl_forward<T>(a, q.data(), work.data(), &counter, agg.mutable_data(), qbar.mutable_data(),
                                      nullptr);
  }
  check(e, "aggregate_kl_forward");
  return py::make_tuple(agg, qbar, counter);
}

template <typename T>
py::tuple aggregate_kl_backward(const py::array& logits, const std::vector<int>& dims, const py::array& qbar,
                                const py::array& grad_agg) {
  const AggregateArgs<T> a = aggregate_args<T>(logits, dims);
  const int64_t N = a.disc.total, V = a.disc.num_vars;
  const T* qb = rows_of<T>(py::array(qbar).reshape({int64_t(1), N}), "qbar", 1, N).p;
  const T* g = rows_of<T>(py::array(grad_agg).reshape({int64_t(1), V}), "grad_agg", 1, V).p;
  auto dl = nan_array<T>({a.B, N});
  cudaError_t e;
  {
    py::gil_scoped_release release;
    e = cuda::aggregate_kl_backward<T>(a, qb, g, dl.mutable_data(), nullptr);
  }
  check(e, "aggregate_kl_backward");
  return py::make_tuple(dl);
}

template <typename T>
GaussianAggregateArgs<T> gaussian_args(const py::array& mu, const py::array& logvar) {
  const Rows<T> m = rows_of<T>(mu, "mu", -1, -1);
  const Rows<T> lv = rows_of<T>(logvar, "logvar", m.rows, m.cols);
  GaussianAggregateArgs<T> a{};  // by field: members may be added
  a.B = m.rows, a.D = m.cols, a.mu = m.p, a.ld_mu = m.ld, a.logvar = lv.p, a.ld_logvar = lv.ld;
  return a;
}

template <typename T>
py::tuple gaussian_aggregate_kl_forward(const py::array& mu, const py::array& logvar) {
  const GaussianAggregateArgs<T> a = gaussian_args<T>(mu, logvar);
  std::vector<double> work(static_cast<size_t>(cuda::kl_workspace_doubles(a.B, 3 * a.D)),
                           std::numeric_limits<double>::quiet_NaN());
  unsigned counter = 0;
  auto agg = nan_array<T>({a.D});
  auto moments = nan_array<double>({int64_t(2), a.D});
  cudaError_t e;
  {
    py::gil_scoped_release release;
    e = cuda::gaussian_aggregate_kl_forward<T>(a, work.data(), &counter, agg.mutable_data(), moments.mutable_data(),
                                               nullptr);
  }
  check(e, "gaussian_aggregate_kl_forward");
  return py::make_tuple(agg, moments, counter);
}

template <typename T>
py::tuple gaussian_aggregate_kl_backward(const py::array& mu, const py::array& logvar, const py::array& moments,
                                         const py::array& grad_agg) {
  const GaussianAggregateArgs<T> a = gaussian_args<T>(mu, logvar);
  const Rows<double> mo = rows_of<double>(moments, "moments", 2, a.D);
  if (mo.rows > 1 && a.D > 0 && mo.ld != a.D) throw py::value_error("moments: must be contiguous");
  const T* g = rows_of<T>(py::array(grad_agg).reshape({int64_t(1), a.D}), "grad_agg", 1, a.D).p;
  auto dmu = nan_array<T>({a.B, a.D}), dlv = nan_array<T>({a.B, a.D});
  cudaError_t e;
  {
    py::gil_scoped_release release;
    e = cuda::gaussian_aggregate_kl_backward<T>(a, mo.p, g, dmu.mutable_data(), dlv.mutable_data(), nullptr);
  }
  check(e, "gaussian_aggregate_kl_backward");
  return py::make_tuple(dmu, dlv);
}

py::array_t<float> philox_uniform(uint64_t seed, uint64_t offset, int64_t n) {
  auto out = nan_array<float>({n});
  float* p = out.mutable_data();
  cudaError_t e;
  {
    py::gil_scoped_release release;
    e = cuda::philox_uniform(seed, offset, n, p, nullptr);
  }
  check(e, "philox_uniform");
  return out;
}

// float32 or float64 by the dtype of the first array argument
#define JV_BY_DTYPE(fn)                                                                   \
  [](const py::array& first, auto&&... rest) -> py::tuple {                              \
    if (first.dtype().is(py::dtype::of<float>())) return fn<float>(first, rest...);      \
    if (first.dtype().is(py::dtype::of<double>())) return fn<double>(first, rest...);    \
    throw py::type_error(#fn ": float32 or float64 arrays expected");                    \
  }

py::dict launch_record() {
  const auto& r = emulation::last_launch();
  py::dict d;
  d["kernel"] = r.kernel;
  d["grid"] = py::make_tuple(r.grid.x, r.grid.y, r.grid.z);
  d["block"] = py::make_tuple(r.block.x, r.block.y, r.block.z);
  d["dynamic_shared"] = r.dynamic_shared;
  d["static_shared"] = r.static_shared;
  d["error"] = static_cast<int>(r.error);
  d["error_string"] = std::string(cudaGetErrorString(r.error));
  d["message"] = r.message;
  return d;
}

}  // namespace

PYBIND11_MODULE(jointvae_emulated_cuda, m) {
  m.doc() = "kernels/cuda run by the CPU emulation of kernels/emulation (tests only)";
  py::register_exception<LaunchError>(m, "LaunchError");
  using OptA = std::optional<py::array>;
  m.def("sample_latent",
        [](const py::array& mu, const py::array& logvar, const py::array& logits, const std::vector<int>& dims,
           double tau, bool training, OptA eps, OptA u, uint64_t seed, uint64_t offset,
           std::optional<uint64_t> intragraph) {
          return JV_BY_DTYPE(sample_latent)(mu, logvar, logits, dims, tau, training, eps, u, seed, offset,
                                            intragraph);
        },
        py::arg("mu"), py::arg("logvar"), py::arg("logits"), py::arg("disc_dims"), py::arg("tau"),
        py::arg("training") = true, py::arg("eps") = py::none(), py::arg("u") = py::none(), py::arg("seed") = 0,
        py::arg("offset") = 0, py::arg("intragraph") = py::none(),
        "-> (latent [B, D+K], sigma_eps [B, D], (seed, offset) used); intragraph: captured-graph form");
  m.def("sample_latent_backward",
        [](const py::array& grad, const py::array& latent, const py::array& sigma_eps, const std::vector<int>& dims,
           double tau, bool training) {
          return JV_BY_DTYPE(sample_latent_backward)(grad, latent, sigma_eps, dims, tau, training);
        },
        py::arg("grad"), py::arg("latent"), py::arg("sigma_eps"), py::arg("disc_dims"), py::arg("tau"),
        py::arg("training") = true, "-> (d mu, d logvar, d logits)");
  m.def("kl_forward",
        [](const py::array& mu, const py::array& logvar, const py::array& logits, const std::vector<int>& dims,
           double c_cont, double c_disc, double g_cont, double g_disc) {
          return JV_BY_DTYPE(kl_forward)(mu, logvar, logits, dims, c_cont, c_disc, g_cont, g_disc);
        },
        py::arg("mu"), py::arg("logvar"), py::arg("logits"), py::arg("disc_dims"), py::arg("c_cont"),
        py::arg("c_disc"), py::arg("gamma_cont"), py::arg("gamma_disc"),
        "-> (loss, kl_cont [D], kl_disc [V], the completion counter after the launch)");
  m.def("kl_backward",
        [](const py::array& mu, const py::array& logvar, const py::array& logits, const std::vector<int>& dims,
           double c_cont, double c_disc, double g_cont, double g_disc, const py::array& kl_cont,
           const py::array& kl_disc, double grad_loss, OptA gkc, OptA gkd) {
          return JV_BY_DTYPE(kl_backward)(mu, logvar, logits, dims, c_cont, c_disc, g_cont, g_disc, kl_cont, kl_disc,
                                          grad_loss, gkc, gkd);
        },
        py::arg("mu"), py::arg("logvar"), py::arg("logits"), py::arg("disc_dims"), py::arg("c_cont"),
        py::arg("c_disc"), py::arg("gamma_cont"), py::arg("gamma_disc"), py::arg("kl_cont"), py::arg("kl_disc"),
        py::arg("grad_loss"), py::arg("grad_kl_cont") = py::none(), py::arg("grad_kl_disc") = py::none(),
        "-> (d mu, d logvar, d logits)");
  m.def("aggregate_kl_forward",
        [](const py::array& logits, const std::vector<int>& dims) {
          return JV_BY_DTYPE(aggregate_kl_forward)(logits, dims);
        },
        py::arg("logits"), py::arg("disc_dims"), "-> (agg_kl [V], qbar [sum K], the completion counter after)");
  m.def("aggregate_kl_backward",
        [](const py::array& logits, const std::vector<int>& dims, const py::array& qbar, const py::array& grad_agg) {
          return JV_BY_DTYPE(aggregate_kl_backward)(logits, dims, qbar, grad_agg);
        },
        py::arg("logits"), py::arg("disc_dims"), py::arg("qbar"), py::arg("grad_agg"), "-> (d logits,)");
  m.def("gaussian_aggregate_kl_forward",
        [](const py::array& mu, const py::array& logvar) {
          return JV_BY_DTYPE(gaussian_aggregate_kl_forward)(mu, logvar);
        },
        py::arg("mu"), py::arg("logvar"),
        "-> (agg_kl [D], moments [2, D] float64 = (m; s2), the completion counter after)");
  m.def("gaussian_aggregate_kl_backward",
        [](const py::array& mu, const py::array& logvar, const py::array& moments, const py::array& grad_agg) {
          return JV_BY_DTYPE(gaussian_aggregate_kl_backward)(mu, logvar, moments, grad_agg);
        },
        py::arg("mu"), py::arg("logvar"), py::arg("moments"), py::arg("grad_agg"), "-> (d mu, d logvar)");
  m.def("philox_uniform", &philox_uniform, py::arg("seed"), py::arg("offset"), py::arg("n"));
  m.def("set_options",
        [](std::optional<uint64_t> seed, std::optional<int> concurrent_blocks) {
          if (seed) emulation::options().seed = *seed;
          if (concurrent_blocks) emulation::options().concurrent_blocks = *concurrent_blocks;
        },
        py::arg("seed") = py::none(), py::arg("concurrent_blocks") = py::none(),
        "block order seed; blocks run at a time");
  m.def("set_launch_param",
        [](const std::string& name, int64_t value) {
          if (!emulation::set_launch_param(name, value)) throw py::key_error("no launch parameter " + name);
        },
        py::arg("name"), py::arg("value"), "override a JV_LAUNCH_PARAM of the .cu (kThreads, kMaxBlocks, ...)");
  m.def("reset_launch_params", &emulation::reset_launch_params);
  m.def("last_launch", &launch_record, "what the last launch on this thread asked for, and its error");
}
