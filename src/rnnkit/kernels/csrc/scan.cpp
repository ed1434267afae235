// rnnkit's compiled recurrences: the fused kernels of kernels/fused.py with their time loops in C++.
//
// Same structure and equations as fused.py: the input projection of all steps stays outside (one big
// GEMM in Python); here, per step, one product with the recurrent weight (oneDNN's packed linear when
// Python found it working, else at::mm) and ONE pass of pointwise gate math over the batch, written
// with ATen's vector types (the same SLEEF exp/tanh torch's own ops use). The backward is the analytic
// one of fused.py: the reverse loop only propagates dL/dh (one product a step) and stores the gate
// gradients; the weight gradients are big products after the loop. Padded batches: `alive` (T, B, 1)
// marks the steps inside each sequence; past its end a sequence keeps its state and gets no gradient.
// Registered as torch ops (torch.ops.rnnkit_scan.*), called from kernels/compiled.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

using at::Tensor;
using at::vec::Vectorized;
using OptTensor = std::optional<Tensor>;

namespace {

// -- products -----------------------------------------------------------------------------------------

// What Python's kernels/packed.py found working on this build: bit 0, oneDNN's packed linear
// (packed.MKLDNN); bit 1, oneDNN's inner-product weight gradient (packed.MKLDNN_WEIGHT_GRAD).
constexpr int64_t kPackedLinear = 1, kWeightGrad = 2;

using LinearFn = Tensor(const Tensor&, const Tensor&, const OptTensor&, c10::string_view,
                        c10::List<std::optional<c10::Scalar>>, std::optional<c10::string_view>);

// f(x) = x W^T (+ bias) for x (batch, in): oneDNN's inner product on a weight reordered once into its
// blocked layout (float32, where kernels/packed.py found it working), else at::mm / at::addmm.
struct Linear {
  Tensor w;  // the packed weight, or W^T
  bool packed = false;

  Linear(const Tensor& weight, int64_t batch, int64_t onednn) {
    packed = (onednn & kPackedLinear) && batch > 0 && weight.scalar_type() == at::kFloat;
    if (packed) {
      static auto reorder = c10::Dispatcher::singleton()
                                .findSchemaOrThrow("mkldnn::_reorder_linear_weight", "")
                                .typed<Tensor(const Tensor&, std::optional<int64_t>)>();
      w = reorder.call(weight.contiguous(), batch);
    } else {
      w = weight.t();
    }
  }

  Tensor operator()(const Tensor& x, const OptTensor& bias = std::nullopt) const {
    if (!packed) return bias ? at::addmm(*bias, x, w) : at::mm(x, w);
    static auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "").typed<LinearFn>();
    return op.call(x, w, bias, "none", c10::List<std::optional<c10::Scalar>>(), std::nullopt).contiguous();
  }
};

Tensor flat(const Tensor& t) {
  return t.reshape({-1, t.size(-1)});
}

// d^T x (out, in) and, with `bias`, d.sum(0), for d (N, out), x (N, in): a weight's (and bias's) gradient
// over all steps at once, as packed.weight_grad does it.
std::pair<Tensor, Tensor> weight_grad(const Tensor& d, const Tensor& x, bool bias, int64_t onednn) {
  if ((onednn & kWeightGrad) && d.scalar_type() == at::kFloat) {
    const Tensor like = at::empty({d.size(1), x.size(1)}, d.options());  // dense out
    auto grads = at::mkldnn_linear_backward_weights(d.contiguous().to_mkldnn(), x.contiguous().to_mkldnn(),
                                                    like, bias);
    return {std::get<0>(grads), bias ? std::get<1>(grads) : Tensor()};
  }
  return {d.t().mm(x), bias ? d.sum(0) : Tensor()};
}

Tensor contiguous_or_undefined(const OptTensor& t) {
  return t ? t->contiguous() : Tensor();
}

// -- activations, and their derivatives written in terms of the output y --------------------------------

enum Act : int64_t { TANH = 0, SIGMOID = 1, RELU = 2, IDENTITY = 3 };

template <typename T>
using Vec = Vectorized<T>;

template <typename T>
inline Vec<T> sigmoid(const Vec<T>& v) {
  return (Vec<T>(T(1)) + v.neg().exp()).reciprocal();
}

template <typename T>
inline Vec<T> activate(int64_t act, const Vec<T>& v) {
  switch (act) {
    case TANH:
      return v.tanh();
    case SIGMOID:
      return sigmoid(v);
    case RELU:
      return at::vec::clamp_min(v, Vec<T>(T(0)));
    default:
      return v;
  }
}

template <typename T>
inline Vec<T> derivative(int64_t act, const Vec<T>& y) {
  const Vec<T> one(T(1)), zero(T(0));
  switch (act) {
    case TANH:
      return one - y * y;
    case SIGMOID:
      return y * (one - y);
    case RELU:
      return Vec<T>::blendv(zero, one, y > zero);
    default:
      return one;
  }
}

template <typename T>
inline Vec<T> load(const T* p, int64_t n) {
  return Vec<T>::loadu(p, n);
}

// f(offset, count) over [0, n) in vector-wide chunks, the last one partial.
template <typename T, typename F>
inline void chunks(int64_t n, const F& f) {
  constexpr int64_t V = Vec<T>::size();
  for (int64_t i = 0; i < n; i += V) f(i, std::min<int64_t>(V, n - i));
}

// Sum of g(offset, count) (a vector) over [0, n) in chunks.
template <typename T, typename G>
inline T reduce(int64_t n, const G& g) {
  Vec<T> acc(T(0));
  chunks<T>(n, [&](int64_t i, int64_t c) {
    Vec<T> v = g(i, c);
    if (c < Vec<T>::size()) v = Vec<T>::set(Vec<T>(T(0)), v, c);  // keep only the c valid lanes
    acc = acc + v;
  });
  T lanes[Vec<T>::size()];
  acc.store(lanes);
  T s = 0;
  for (int64_t k = 0; k < Vec<T>::size(); ++k) s += lanes[k];
  return s;
}

// body(b) for each batch row, split over threads once a step has enough work to pay for it.
template <typename F>
inline void rows(int64_t B, int64_t width, const F& body) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, width));
  at::parallel_for(0, B, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) body(b);
  });
}

// alive[t] as B flags, or nullptr when nothing is padded.
inline const bool* alive_at(const Tensor& alive, int64_t t, int64_t B) {
  return alive.defined() ? alive.data_ptr<bool>() + t * B : nullptr;
}

inline bool dead(const bool* live, int64_t b) {
  return live && !live[b];
}

template <typename T>
inline void copy_row(T* dst, const T* src, int64_t n) {
  std::memcpy(dst, src, n * sizeof(T));
}

template <typename T>
inline void zero_row(T* dst, int64_t n) {
  std::memset(dst, 0, n * sizeof(T));
}

// rows of src into dst where the sequence is alive (all rows without padding): the carried gradient.
template <typename T>
void take_alive(Tensor& dst, const Tensor& src, const bool* live) {
  if (!live) {
    dst.copy_(src);
    return;
  }
  const int64_t B = dst.size(0), n = dst.size(1);
  T* d = dst.data_ptr<T>();
  const T* s = src.data_ptr<T>();
  for (int64_t b = 0; b < B; ++b)
    if (live[b]) copy_row(d + b * n, s + b * n, n);
}

// dL/d(a step's starting state) into dst where the sequence is alive, from the product part s:
// s * mask (state dropout, mask (B, n)) + zone * (dst + gy) (zoneout; dst + gy is dL/d(the step's new
// state)); plain take_alive without either.
template <typename T>
void carry_back(Tensor& dst, const Tensor& s, const T* gy, const T* mask, const T* zone, const bool* live) {
  if (!mask && !zone) return take_alive<T>(dst, s, live);
  const int64_t n = dst.size(1);
  T* d = dst.data_ptr<T>();
  const T* sp = s.data_ptr<T>();
  rows(dst.size(0), n, [&](int64_t b) {
    if (dead(live, b)) return;
    chunks<T>(n, [&](int64_t i, int64_t c) {
      const int64_t k = b * n + i;
      Vec<T> v = load(sp + k, c);
      if (mask) v = v * load(mask + k, c);
      if (zone) v = v + load(zone + k, c) * (load(d + k, c) + load(gy + k, c));
      v.store(d + k, c);
    });
  });
}

// pointer to t's (B, n) slice of an optional (T, B, n) tensor, or nullptr
template <typename T>
inline const T* step_of(const Tensor& t, int64_t step) {
  return t.defined() ? t.data_ptr<T>() + step * t.size(1) * t.size(2) : nullptr;
}

template <typename T>
inline const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

#define RNNKIT_DISPATCH(t, name, ...) AT_DISPATCH_FLOATING_TYPES((t).scalar_type(), name, __VA_ARGS__)

// -- Elman: h_t = phi(xw_t + h_{t-1} W_hh^T) ----------------------------------------------------------
// State dropout: `mask` (B, H) multiplies h_{t-1} in the product; zoneout: h_t = h~ + zone (h_{t-1} - h~)
// with zone (T, B, H) and h~ the candidate above. The same for Jordan's y.

// -> (y (T, B, H), h_last, hs (T+1, B, H), cand (T, B, H) before zoneout (a view of hs[1:] without))
std::tuple<Tensor, Tensor, Tensor, Tensor> elman_forward(const Tensor& xw_, const Tensor& h0,
                                                         const Tensor& w_hh, const OptTensor& alive_,
                                                         const OptTensor& mask_, const OptTensor& zone_,
                                                         int64_t act, int64_t onednn) {
  const Tensor xw = xw_.contiguous(), alive = contiguous_or_undefined(alive_);
  const Tensor mask = contiguous_or_undefined(mask_), zone = contiguous_or_undefined(zone_);
  const int64_t steps = xw.size(0), B = xw.size(1), H = xw.size(2);
  Tensor hs = at::empty({steps + 1, B, H}, xw.options());
  hs[0].copy_(h0);
  Tensor cand = zone.defined() ? at::empty({steps, B, H}, xw.options()) : hs.slice(0, 1);
  Linear rec(w_hh, B, onednn);
  RNNKIT_DISPATCH(xw, "elman_forward", [&] {
    using T = scalar_t;
    for (int64_t t = 0; t < steps; ++t) {
      const Tensor hw = rec(mask.defined() ? hs[t] * mask : hs[t]);
      const T *x = xw.data_ptr<T>() + t * B * H, *p = hw.data_ptr<T>(), *prev = hs.data_ptr<T>() + t * B * H;
      const T* zt = step_of<T>(zone, t);
      T *out = hs.data_ptr<T>() + (t + 1) * B * H, *cn = cand.data_ptr<T>() + t * B * H;
      const bool* live = alive_at(alive, t, B);
      rows(B, H, [&](int64_t b) {
        const int64_t o = b * H;
        if (dead(live, b)) return copy_row(out + o, prev + o, H);
        chunks<T>(H, [&](int64_t i, int64_t n) {
          const Vec<T> v = activate(act, load(x + o + i, n) + load(p + o + i, n));
          v.store(cn + o + i, n);
          if (zt) (v + load(zt + o + i, n) * (load(prev + o + i, n) - v)).store(out + o + i, n);
        });
      });
    }
  });
  return {hs.slice(0, 1).clone(), hs[steps].clone(), hs, cand};
}

// -> (dxw (T, B, H), dh0, dw_hh)
std::tuple<Tensor, Tensor, Tensor> elman_backward(const Tensor& dy_, const Tensor& dh_last,
                                                  const Tensor& w_hh, const Tensor& hs, const Tensor& cand_,
                                                  const OptTensor& alive_, const OptTensor& mask_,
                                                  const OptTensor& zone_, int64_t act, int64_t onednn) {
  const Tensor dy = dy_.contiguous(), alive = contiguous_or_undefined(alive_), cand = cand_.contiguous();
  const Tensor mask = contiguous_or_undefined(mask_), zone = contiguous_or_undefined(zone_);
  const int64_t steps = dy.size(0), B = dy.size(1), H = dy.size(2);
  Tensor dz = at::empty_like(dy), dh = dh_last.contiguous().clone();
  Linear back(w_hh.t(), B, onednn);  // dh_{t-1} = dz_t W_hh
  RNNKIT_DISPATCH(dy, "elman_backward", [&] {
    using T = scalar_t;
    for (int64_t t = steps - 1; t >= 0; --t) {
      const T *g = dy.data_ptr<T>() + t * B * H, *y = cand.data_ptr<T>() + t * B * H,
              *d = dh.data_ptr<T>(), *zt = step_of<T>(zone, t);
      T* z = dz.data_ptr<T>() + t * B * H;
      const bool* live = alive_at(alive, t, B);
      rows(B, H, [&](int64_t b) {
        const int64_t o = b * H;
        if (dead(live, b)) return zero_row(z + o, H);  // no gradient into a finished sequence's steps
        chunks<T>(H, [&](int64_t i, int64_t n) {
          Vec<T> gv = load(d + o + i, n) + load(g + o + i, n);
          if (zt) gv = gv - load(zt + o + i, n) * gv;  // dL/d(candidate)
          (gv * derivative(act, load(y + o + i, n))).store(z + o + i, n);
        });
      });
      carry_back<T>(dh, back(dz[t]), g, ptr_or_null<T>(mask), zt, live);
    }
  });
  const Tensor h_seen = mask.defined() ? hs.slice(0, 0, steps) * mask : hs.slice(0, 0, steps);
  return {dz, dh, weight_grad(flat(dz), flat(h_seen), false, onednn).first};
}

// -- GRU: r, z = sigmoid(.), n = tanh(x_n + r * (h W_hn^T + b_hn)) [reset after] or
//         tanh(x_n + (r * h) W_hn^T + b_hn) [reset before], h_t = n + z (h_{t-1} - n) ---------------

// -> (y, h_last, hs (T+1, B, H), rz (T, B, 2H), n (T, B, H), m (T, B, H)): m = h W_hn^T + b_hn or r * h
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gru_forward(const Tensor& xw_, const Tensor& h0,
                                                                       const Tensor& w_hh,
                                                                       const OptTensor& b_hh,
                                                                       const OptTensor& alive_,
                                                                       const OptTensor& mask_,
                                                                       const OptTensor& zone_,
                                                                       bool reset_after, int64_t onednn) {
  const Tensor xw = xw_.contiguous(), alive = contiguous_or_undefined(alive_);
  const Tensor mask = contiguous_or_undefined(mask_), zone = contiguous_or_undefined(zone_);
  const int64_t steps = xw.size(0), B = xw.size(1), H = h0.size(1), G = 3 * H;
  Tensor hs = at::empty({steps + 1, B, H}, xw.options());
  hs[0].copy_(h0);
  Tensor rz = at::empty({steps, B, 2 * H}, xw.options()), n_all = at::empty({steps, B, H}, xw.options());
  Tensor m_all = at::empty({steps, B, H}, xw.options());
  const Tensor w = w_hh.contiguous();
  OptTensor b_rz, b_n;
  if (b_hh) b_rz = b_hh->slice(0, 0, 2 * H), b_n = b_hh->slice(0, 2 * H);
  std::optional<Linear> rec, rec_rz, rec_n;
  if (reset_after) {
    rec.emplace(w, B, onednn);
  } else {
    rec_rz.emplace(w.slice(0, 0, 2 * H), B, onednn);
    rec_n.emplace(w.slice(0, 2 * H), B, onednn);
  }
  RNNKIT_DISPATCH(xw, "gru_forward", [&] {
    using T = scalar_t;
    for (int64_t t = 0; t < steps; ++t) {
      const T *x = xw.data_ptr<T>() + t * B * G, *h = hs.data_ptr<T>() + t * B * H;
      T *out = hs.data_ptr<T>() + (t + 1) * B * H, *r_z = rz.data_ptr<T>() + t * B * 2 * H;
      T *nn = n_all.data_ptr<T>() + t * B * H, *m = m_all.data_ptr<T>() + t * B * H;
      const bool* live = alive_at(alive, t, B);
      const Tensor hm = mask.defined() ? hs[t] * mask : hs[t];  // what the products see
      const T *hmp = hm.data_ptr<T>(), *zt = zone.defined() ? zone.data_ptr<T>() + t * B * H : nullptr;
      // h_t = n + z (h - n), then zoneout: h_t + zone (h - h_t); or h where the sequence has ended
      auto update = [&](int64_t b, int64_t i, int64_t c, const Vec<T>& n) {
        const Vec<T> hv = load(h + b * H + i, c), z = load(r_z + b * 2 * H + H + i, c);
        Vec<T> v = n + z * (hv - n);
        if (zt) v = v + load(zt + b * H + i, c) * (hv - v);
        (dead(live, b) ? hv : v).store(out + b * H + i, c);
      };
      if (reset_after) {
        const Tensor hw = (*rec)(hm, b_hh);
        const T* p = hw.data_ptr<T>();
        rows(B, G, [&](int64_t b) {
          const T *xb = x + b * G, *pb = p + b * G;
          chunks<T>(H, [&](int64_t i, int64_t c) {
            const Vec<T> r = sigmoid(load(xb + i, c) + load(pb + i, c));
            const Vec<T> z = sigmoid(load(xb + H + i, c) + load(pb + H + i, c));
            const Vec<T> mv = load(pb + 2 * H + i, c);
            const Vec<T> n = (load(xb + 2 * H + i, c) + r * mv).tanh();
            r.store(r_z + b * 2 * H + i, c);
            z.store(r_z + b * 2 * H + H + i, c);
            mv.store(m + b * H + i, c);
            n.store(nn + b * H + i, c);
            update(b, i, c, n);
          });
        });
      } else {
        const Tensor hw = (*rec_rz)(hm, b_rz);
        const T* p = hw.data_ptr<T>();
        rows(B, 2 * H, [&](int64_t b) {
          chunks<T>(2 * H, [&](int64_t i, int64_t c) {
            sigmoid(load(x + b * G + i, c) + load(p + b * 2 * H + i, c)).store(r_z + b * 2 * H + i, c);
          });
          chunks<T>(H, [&](int64_t i, int64_t c) {
            (load(r_z + b * 2 * H + i, c) * load(hmp + b * H + i, c)).store(m + b * H + i, c);
          });
        });
        const Tensor hn = (*rec_n)(m_all[t], b_n);
        const T* q = hn.data_ptr<T>();
        rows(B, H, [&](int64_t b) {
          chunks<T>(H, [&](int64_t i, int64_t c) {
            const Vec<T> n = (load(x + b * G + 2 * H + i, c) + load(q + b * H + i, c)).tanh();
            n.store(nn + b * H + i, c);
            update(b, i, c, n);
          });
        });
      }
    }
  });
  return {hs.slice(0, 1).clone(), hs[steps].clone(), hs, rz, n_all, m_all};
}

// -> (dxw (T, B, 3H), dh0, dw_hh, db_hh or undefined)
std::tuple<Tensor, Tensor, Tensor, Tensor> gru_backward(const Tensor& dy_, const Tensor& dh_last,
                                                        const Tensor& w_hh, bool has_bias, const Tensor& hs,
                                                        const Tensor& rz, const Tensor& n_all,
                                                        const Tensor& m_all, const OptTensor& alive_,
                                                        const OptTensor& mask_, const OptTensor& zone_,
                                                        bool reset_after, int64_t onednn) {
  const Tensor dy = dy_.contiguous(), alive = contiguous_or_undefined(alive_);
  const Tensor mask = contiguous_or_undefined(mask_), zone = contiguous_or_undefined(zone_);
  const int64_t steps = dy.size(0), B = dy.size(1), H = dy.size(2), G = 3 * H;
  Tensor dxg = at::empty({steps, B, G}, dy.options()), dh = dh_last.contiguous().clone();
  Tensor dm;         // reset after: of h W_hh^T + b_hh, [dr, dz, dn * r]
  Tensor drz, dn_s;  // reset before: contiguous copies of [dr, dz] and dn for the two products
  const Tensor w = w_hh.contiguous();
  std::optional<Linear> back, back_rz, back_n;
  if (reset_after) {
    dm = at::empty({steps, B, G}, dy.options());
    back.emplace(w.t(), B, onednn);
  } else {
    drz = at::empty({B, 2 * H}, dy.options()), dn_s = at::empty({B, H}, dy.options());
    back_rz.emplace(w.slice(0, 0, 2 * H).t(), B, onednn);
    back_n.emplace(w.slice(0, 2 * H).t(), B, onednn);
  }
  RNNKIT_DISPATCH(dy, "gru_backward", [&] {
    using T = scalar_t;
    const Vec<T> one(T(1));
    for (int64_t t = steps - 1; t >= 0; --t) {
      const T *gy = dy.data_ptr<T>() + t * B * H, *h = hs.data_ptr<T>() + t * B * H;
      const T *r_z = rz.data_ptr<T>() + t * B * 2 * H, *nn = n_all.data_ptr<T>() + t * B * H;
      const T* m = m_all.data_ptr<T>() + t * B * H;
      T *d = dh.data_ptr<T>(), *dx = dxg.data_ptr<T>() + t * B * G;
      const bool* live = alive_at(alive, t, B);
      const T *mk = mask.defined() ? mask.data_ptr<T>() : nullptr,
              *zt = zone.defined() ? zone.data_ptr<T>() + t * B * H : nullptr;
      // dL/d(h_t before zoneout) = (1 - zone) g, g = dL/dh_t
      auto kept = [&](int64_t b, int64_t i, int64_t c, const Vec<T>& g) {
        return zt ? g - load(zt + b * H + i, c) * g : g;
      };
      // h_t = n + z (h - n):  dn_pre = g (1 - z)(1 - n^2),  dz_pre = g (h - n) z (1 - z), g before zoneout
      auto gates = [&](int64_t b, int64_t i, int64_t c, Vec<T>& g, Vec<T>& z, Vec<T>& dn) {
        g = kept(b, i, c, load(d + b * H + i, c) + load(gy + b * H + i, c));
        z = load(r_z + b * 2 * H + H + i, c);
        const Vec<T> n = load(nn + b * H + i, c);
        dn = g * (one - z) * (one - n * n);
        (g * (load(h + b * H + i, c) - n) * z * (one - z)).store(dx + b * G + H + i, c);
        dn.store(dx + b * G + 2 * H + i, c);
      };
      // dL/dh_{t-1} = (product part) mask + zone g + (1 - zone) g z, from the product part s
      auto carry = [&](int64_t b, int64_t i, int64_t c, Vec<T> s) {
        const Vec<T> g = load(d + b * H + i, c) + load(gy + b * H + i, c);
        if (mk) s = s * load(mk + b * H + i, c);
        const Vec<T> z = load(r_z + b * 2 * H + H + i, c);
        if (!zt) return s + g * z;
        const Vec<T> zv = load(zt + b * H + i, c);
        return s + zv * g + (g - zv * g) * z;
      };
      if (reset_after) {  // n = tanh(x_n + r m):  dr_pre = dn_pre m r (1 - r)
        T* dmt = dm.data_ptr<T>() + t * B * G;
        rows(B, G, [&](int64_t b) {
          if (dead(live, b)) {
            zero_row(dx + b * G, G);
            zero_row(dmt + b * G, G);
            return;
          }
          chunks<T>(H, [&](int64_t i, int64_t c) {
            Vec<T> g, z, dn;
            gates(b, i, c, g, z, dn);
            const Vec<T> r = load(r_z + b * 2 * H + i, c);
            const Vec<T> dr = dn * load(m + b * H + i, c) * r * (one - r);
            dr.store(dx + b * G + i, c);
            dr.store(dmt + b * G + i, c);
            load(dx + b * G + H + i, c).store(dmt + b * G + H + i, c);
            (dn * r).store(dmt + b * G + 2 * H + i, c);
          });
        });
        const Tensor step = (*back)(dm[t]);
        const T* s = step.data_ptr<T>();
        rows(B, H, [&](int64_t b) {  // dL/dh_{t-1} = (product part) + g z
          if (dead(live, b)) return;
          chunks<T>(H, [&](int64_t i, int64_t c) { carry(b, i, c, load(s + b * H + i, c)).store(d + b * H + i, c); });
        });
      } else {  // n = tanh(x_n + (r h) W_hn^T + b_hn)
        T *pz = drz.data_ptr<T>(), *pn = dn_s.data_ptr<T>();
        rows(B, G, [&](int64_t b) {
          if (dead(live, b)) {
            zero_row(dx + b * G, G);
            zero_row(pz + b * 2 * H, 2 * H);
            zero_row(pn + b * H, H);
            return;
          }
          chunks<T>(H, [&](int64_t i, int64_t c) {
            Vec<T> g, z, dn;
            gates(b, i, c, g, z, dn);
            dn.store(pn + b * H + i, c);
            load(dx + b * G + H + i, c).store(pz + b * 2 * H + H + i, c);
          });
        });
        const Tensor drh = (*back_n)(dn_s);  // dL/d(r h)
        const T* q = drh.data_ptr<T>();
        const Tensor hm = mask.defined() ? hs[t] * mask : hs[t];  // what the products saw
        const T* hmp = hm.data_ptr<T>();
        rows(B, H, [&](int64_t b) {  // dr_pre = drh h' r (1 - r)
          if (dead(live, b)) return;
          chunks<T>(H, [&](int64_t i, int64_t c) {
            const Vec<T> r = load(r_z + b * 2 * H + i, c);
            const Vec<T> dr = load(q + b * H + i, c) * load(hmp + b * H + i, c) * r * (one - r);
            dr.store(dx + b * G + i, c);
            dr.store(pz + b * 2 * H + i, c);
          });
        });
        const Tensor step = (*back_rz)(drz);
        const T* s = step.data_ptr<T>();
        rows(B, H, [&](int64_t b) {  // dL/dh_{t-1} = (products) + g z + drh r
          if (dead(live, b)) return;
          chunks<T>(H, [&](int64_t i, int64_t c) {
            const Vec<T> r = load(r_z + b * 2 * H + i, c);
            carry(b, i, c, load(s + b * H + i, c) + load(q + b * H + i, c) * r).store(d + b * H + i, c);
          });
        });
      }
    }
  });
  const Tensor h_prev = flat(mask.defined() ? hs.slice(0, 0, steps) * mask : hs.slice(0, 0, steps));
  if (reset_after) {
    auto [dw_hh, db_hh] = weight_grad(flat(dm), h_prev, has_bias, onednn);
    return {dxg, dh, dw_hh, db_hh};
  }
  // reset before: the r and z blocks multiply h, the n block multiplies r * h
  const Tensor dxf = flat(dxg);
  auto [dw_rz, db_rz] = weight_grad(dxf.slice(1, 0, 2 * H), h_prev, has_bias, onednn);
  auto [dw_n, db_n] = weight_grad(dxf.slice(1, 2 * H), flat(m_all), has_bias, onednn);
  return {dxg, dh, at::cat({dw_rz, dw_n}), has_bias ? at::cat({db_rz, db_n}) : Tensor()};
}

// -- Jordan: h_t = phi(xw_t + y_{t-1} W_yh^T), y_t = psi(h_t W_hy^T + b_y) --------------------------------

// -> (y (T, B, O), y_last, hs (T, B, H), ys (T+1, B, O), cand (T, B, O) before zoneout)
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> jordan_forward(
    const Tensor& xw_, const Tensor& y0, const Tensor& w_yh, const Tensor& w_hy, const OptTensor& b_y,
    const OptTensor& alive_, const OptTensor& mask_, const OptTensor& zone_, int64_t act, int64_t out_act,
    int64_t onednn) {
  const Tensor xw = xw_.contiguous(), alive = contiguous_or_undefined(alive_);
  const Tensor mask = contiguous_or_undefined(mask_), zone = contiguous_or_undefined(zone_);
  const int64_t steps = xw.size(0), B = xw.size(1), H = xw.size(2), O = y0.size(1);
  Tensor hs = at::empty({steps, B, H}, xw.options()), ys = at::empty({steps + 1, B, O}, xw.options());
  ys[0].copy_(y0);
  Tensor cand = zone.defined() ? at::empty({steps, B, O}, xw.options()) : ys.slice(0, 1);
  Linear rec(w_yh, B, onednn), read(w_hy, B, onednn);
  RNNKIT_DISPATCH(xw, "jordan_forward", [&] {
    using T = scalar_t;
    for (int64_t t = 0; t < steps; ++t) {
      const Tensor a = rec(mask.defined() ? ys[t] * mask : ys[t]);
      const T *x = xw.data_ptr<T>() + t * B * H, *p = a.data_ptr<T>();
      T* h = hs.data_ptr<T>() + t * B * H;
      rows(B, H, [&](int64_t b) {
        chunks<T>(H, [&](int64_t i, int64_t c) {
          activate(act, load(x + b * H + i, c) + load(p + b * H + i, c)).store(h + b * H + i, c);
        });
      });
      const Tensor v = read(hs[t], b_y);
      const T *q = v.data_ptr<T>(), *prev = ys.data_ptr<T>() + t * B * O;
      T *out = ys.data_ptr<T>() + (t + 1) * B * O, *cn = cand.data_ptr<T>() + t * B * O;
      const T* zt = step_of<T>(zone, t);
      const bool* live = alive_at(alive, t, B);
      rows(B, O, [&](int64_t b) {
        if (dead(live, b)) return copy_row(out + b * O, prev + b * O, O);
        chunks<T>(O, [&](int64_t i, int64_t c) {
          const int64_t k = b * O + i;
          const Vec<T> v = activate(out_act, load(q + k, c));
          v.store(cn + k, c);
          if (zt) (v + load(zt + k, c) * (load(prev + k, c) - v)).store(out + k, c);
        });
      });
    }
  });
  return {ys.slice(0, 1).clone(), ys[steps].clone(), hs, ys, cand};
}

// -> (dxw (T, B, H), dy0, dw_yh, dw_hy, db_y or undefined)
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> jordan_backward(const Tensor& dy_, const Tensor& dy_last,
                                                                   const Tensor& w_yh, const Tensor& w_hy,
                                                                   bool has_bias, const Tensor& hs,
                                                                   const Tensor& ys, const Tensor& cand_,
                                                                   const OptTensor& alive_,
                                                                   const OptTensor& mask_,
                                                                   const OptTensor& zone_, int64_t act,
                                                                   int64_t out_act, int64_t onednn) {
  const Tensor dy = dy_.contiguous(), alive = contiguous_or_undefined(alive_), cand = cand_.contiguous();
  const Tensor mask = contiguous_or_undefined(mask_), zone = contiguous_or_undefined(zone_);
  const int64_t steps = dy.size(0), B = dy.size(1), O = dy.size(2), H = hs.size(2);
  Tensor dv = at::empty_like(dy), da = at::empty_like(hs), dstate = dy_last.contiguous().clone();
  Linear to_h(w_hy.t(), B, onednn), to_y(w_yh.t(), B, onednn);
  RNNKIT_DISPATCH(dy, "jordan_backward", [&] {
    using T = scalar_t;
    for (int64_t t = steps - 1; t >= 0; --t) {
      const T *g = dy.data_ptr<T>() + t * B * O, *y = cand.data_ptr<T>() + t * B * O,
              *d = dstate.data_ptr<T>(), *zt = step_of<T>(zone, t);
      T* v = dv.data_ptr<T>() + t * B * O;
      const bool* live = alive_at(alive, t, B);
      rows(B, O, [&](int64_t b) {  // dL/dy_t: as output and as the next step's state
        if (dead(live, b)) return zero_row(v + b * O, O);
        chunks<T>(O, [&](int64_t i, int64_t c) {
          const int64_t k = b * O + i;
          Vec<T> gv = load(d + k, c) + load(g + k, c);
          if (zt) gv = gv - load(zt + k, c) * gv;  // dL/d(candidate)
          (gv * derivative(out_act, load(y + k, c))).store(v + k, c);
        });
      });
      const Tensor u = to_h(dv[t]);
      const T *p = u.data_ptr<T>(), *h = hs.data_ptr<T>() + t * B * H;
      T* a = da.data_ptr<T>() + t * B * H;
      rows(B, H, [&](int64_t b) {
        chunks<T>(H, [&](int64_t i, int64_t c) {
          (load(p + b * H + i, c) * derivative(act, load(h + b * H + i, c))).store(a + b * H + i, c);
        });
      });
      carry_back<T>(dstate, to_y(da[t]), g, ptr_or_null<T>(mask), zt, live);
    }
  });
  auto [dw_hy, db_y] = weight_grad(flat(dv), flat(hs), has_bias, onednn);
  const Tensor y_seen = mask.defined() ? ys.slice(0, 0, steps) * mask : ys.slice(0, 0, steps);
  return {da, dstate, weight_grad(flat(da), flat(y_seen), false, onednn).first, dw_hy, db_y};
}

// -- LSTM (peephole, projection, layer norm): gates i, f, g, o; c_t = f c + i g; h_t = o tanh(c_t) --------
// With layer norm (no affine inside, gains and bias passed in): gates = xw + LN(h W_hh^T) * g_h and
// h_t = o tanh(LN(c_t) * g_c + b_c). Peephole: i, f see c_{t-1}, o sees c_t. Projection: h_t = (.) W_hr^T.

constexpr double kEps = 1e-5;  // torch.native_layer_norm's, as in fused._norm

// mean and 1/sqrt(var + eps) of p[0:n] (biased variance, two passes)
template <typename T>
inline std::pair<T, T> moments(const T* p, int64_t n) {
  const T mean = reduce<T>(n, [&](int64_t i, int64_t c) { return load(p + i, c); }) / T(n);
  const Vec<T> mv(mean);
  const T var = reduce<T>(n,
                          [&](int64_t i, int64_t c) {
                            const Vec<T> d = load(p + i, c) - mv;
                            return d * d;
                          }) /
                T(n);
  return {mean, T(1) / std::sqrt(var + T(kEps))};
}

// Gradient through xhat = (v - mean) * rstd given u = dL/dxhat (in place over u's row of n):
// rstd (u - mean(u) - xhat mean(u xhat))
template <typename T>
inline void norm_backward(T* u, const T* xhat, T rstd, int64_t n, T* out) {
  const T s1 = reduce<T>(n, [&](int64_t i, int64_t c) { return load(u + i, c); }) / T(n);
  const T s2 = reduce<T>(n, [&](int64_t i, int64_t c) { return load(u + i, c) * load(xhat + i, c); }) / T(n);
  const Vec<T> v1(s1), v2(s2), r(rstd);
  chunks<T>(n, [&](int64_t i, int64_t c) {
    (r * (load(u + i, c) - v1 - load(xhat + i, c) * v2)).store(out + i, c);
  });
}

using LSTMForward = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                               Tensor, Tensor, Tensor>;

// -> (y, h_last, c_last, hs (T+1, B, R), cs (T+1, B, H), acts (T, B, 4H) activated gates, tcs (T, B, H)
//     tanh of the cell output, full (T, B, H) o * tanh(.) before the projection [projection only],
//     xh (T, B, 4H), rh (T, B, 1), xc (T, B, H), rc (T, B, 1) normalised products and rstd [layer norm],
//     cand (T, B, H) the new cell values before zoneout (a view of cs[1:] without zone_c))
// State dropout: `mask` (B, R) multiplies h where it enters h W_hh^T. Zoneout: h_t = h~ + zone_h (h - h~),
// c_t likewise with zone_c (T, B, H); h~ = o tanh(c~) reads the cell value before its zoneout.
LSTMForward lstm_forward(const Tensor& xw_, const Tensor& h0, const Tensor& c0, const Tensor& w_hh,
                         const OptTensor& w_hr, const OptTensor& peep_, const OptTensor& g_h_,
                         const OptTensor& g_c_, const OptTensor& b_c_, const OptTensor& alive_,
                         const OptTensor& mask_, const OptTensor& zone_h_, const OptTensor& zone_c_,
                         int64_t onednn) {
  const Tensor xw = xw_.contiguous(), alive = contiguous_or_undefined(alive_);
  const Tensor mask = contiguous_or_undefined(mask_), zone_h = contiguous_or_undefined(zone_h_);
  const Tensor zone_c = contiguous_or_undefined(zone_c_);
  const Tensor peep = contiguous_or_undefined(peep_), g_h = contiguous_or_undefined(g_h_);
  const Tensor g_c = contiguous_or_undefined(g_c_), b_c = contiguous_or_undefined(b_c_);
  const int64_t steps = xw.size(0), B = xw.size(1), H = c0.size(1), R = h0.size(1), G = 4 * H;
  const bool proj = w_hr.has_value(), ln = g_h.defined(), has_peep = peep.defined();
  const auto opt = xw.options();
  Tensor hs = at::empty({steps + 1, B, R}, opt), cs = at::empty({steps + 1, B, H}, opt);
  hs[0].copy_(h0);
  cs[0].copy_(c0);
  Tensor acts = at::empty({steps, B, G}, opt), tcs = at::empty({steps, B, H}, opt);
  Tensor full = proj ? at::empty({steps, B, H}, opt) : Tensor();
  Tensor cand = zone_c.defined() ? at::empty({steps, B, H}, opt) : cs.slice(0, 1);
  Tensor xh, rh, xc, rc;
  if (ln) {
    xh = at::empty({steps, B, G}, opt), rh = at::empty({steps, B, 1}, opt);
    xc = at::empty({steps, B, H}, opt), rc = at::empty({steps, B, 1}, opt);
  }
  Linear rec(w_hh, B, onednn);
  std::optional<Linear> project;
  if (proj) project.emplace(*w_hr, B, onednn);
  RNNKIT_DISPATCH(xw, "lstm_forward", [&] {
    using T = scalar_t;
    const T *pi = has_peep ? peep.data_ptr<T>() : nullptr, *pf = pi ? pi + H : nullptr,
            *po = pi ? pi + 2 * H : nullptr;
    const T *gh = ln ? g_h.data_ptr<T>() : nullptr, *gc = ln ? g_c.data_ptr<T>() : nullptr;
    const T* bc = ln ? b_c.data_ptr<T>() : nullptr;
    for (int64_t t = 0; t < steps; ++t) {
      const Tensor hw = rec(mask.defined() ? hs[t] * mask : hs[t]);
      const T *x = xw.data_ptr<T>() + t * B * G, *p = hw.data_ptr<T>(),
              *c_prev = cs.data_ptr<T>() + t * B * H;
      const T* h_prev = hs.data_ptr<T>() + t * B * R;
      const T *zh = zone_h.defined() ? zone_h.data_ptr<T>() + t * B * R : nullptr,
              *zc = zone_c.defined() ? zone_c.data_ptr<T>() + t * B * H : nullptr;
      T *c_new = cand.data_ptr<T>() + t * B * H, *c_out = cs.data_ptr<T>() + (t + 1) * B * H;
      T* a = acts.data_ptr<T>() + t * B * G;
      T *tc = tcs.data_ptr<T>() + t * B * H, *h_new = hs.data_ptr<T>() + (t + 1) * B * R;
      T* out = proj ? full.data_ptr<T>() + t * B * H : h_new;  // o * tanh(.) goes here
      T *xht = ln ? xh.data_ptr<T>() + t * B * G : nullptr,
        *xct = ln ? xc.data_ptr<T>() + t * B * H : nullptr;
      T *rht = ln ? rh.data_ptr<T>() + t * B : nullptr, *rct = ln ? rc.data_ptr<T>() + t * B : nullptr;
      const bool* live = alive_at(alive, t, B);
      rows(B, G, [&](int64_t b) {
        const T *xb = x + b * G, *pb = p + b * G, *cb = c_prev + b * H;
        T *ab = a + b * G, *cn = c_new + b * H, *tb = tc + b * H, *ob = out + b * H;
        const bool frozen = dead(live, b);
        // pre-activation k of gate block `blk`: xw + (h W_hh^T), or xw + LN(h W_hh^T) g_h
        if (ln) {
          const std::pair<T, T> stats = moments(pb, G);
          rht[b] = stats.second;
          const Vec<T> mv(stats.first), rv(stats.second);
          chunks<T>(G,
                    [&](int64_t i, int64_t c) { ((load(pb + i, c) - mv) * rv).store(xht + b * G + i, c); });
        }
        auto pre = [&](int64_t k, int64_t c) {
          return ln ? load(xb + k, c) + load(xht + b * G + k, c) * load(gh + k, c)
                    : load(xb + k, c) + load(pb + k, c);
        };
        // h = o tanh(.) from the cell output's activation input u
        auto output = [&](int64_t i, int64_t c, const Vec<T>& cnew, const Vec<T>& u) {
          Vec<T> o = pre(3 * H + i, c);
          if (pi) o = o + load(po + i, c) * cnew;
          o = sigmoid(o);
          o.store(ab + 3 * H + i, c);
          const Vec<T> th = u.tanh();
          th.store(tb + i, c);
          Vec<T> v = o * th;
          if (zh && !proj) v = v + load(zh + b * R + i, c) * (load(h_prev + b * R + i, c) - v);
          v.store(ob + i, c);
        };
        chunks<T>(H, [&](int64_t i, int64_t c) {
          const Vec<T> cv = load(cb + i, c);
          Vec<T> iv = pre(i, c), fv = pre(H + i, c);
          if (pi) iv = iv + load(pi + i, c) * cv, fv = fv + load(pf + i, c) * cv;
          iv = sigmoid(iv), fv = sigmoid(fv);
          const Vec<T> gv = pre(2 * H + i, c).tanh();
          iv.store(ab + i, c), fv.store(ab + H + i, c), gv.store(ab + 2 * H + i, c);
          const Vec<T> cnew = frozen ? cv : fv * cv + iv * gv;
          cnew.store(cn + i, c);
          if (zc) (cnew + load(zc + b * H + i, c) * (cv - cnew)).store(c_out + b * H + i, c);
          if (!ln) output(i, c, cnew, cnew);
        });
        if (ln) {  // tc = tanh(LN(c_t) g_c + b_c): needs the whole row of c_t first
          const std::pair<T, T> stats = moments(cn, H);
          rct[b] = stats.second;
          const Vec<T> mv(stats.first), rv(stats.second);
          chunks<T>(H, [&](int64_t i, int64_t c) {
            const Vec<T> cnew = load(cn + i, c), z = (cnew - mv) * rv;
            z.store(xct + b * H + i, c);
            output(i, c, cnew, z * load(gc + i, c) + load(bc + i, c));
          });
        }
        if (!proj && frozen) copy_row(h_new + b * R, h_prev + b * R, R);
      });
      if (proj) {
        const Tensor hp = (*project)(full[t]);
        const T* q = hp.data_ptr<T>();
        for (int64_t b = 0; b < B; ++b) {
          if (dead(live, b) || !zh) {
            copy_row(h_new + b * R, (dead(live, b) ? h_prev : q) + b * R, R);
            continue;
          }
          chunks<T>(R, [&](int64_t i, int64_t c) {
            const Vec<T> v = load(q + b * R + i, c);
            (v + load(zh + b * R + i, c) * (load(h_prev + b * R + i, c) - v)).store(h_new + b * R + i, c);
          });
        }
      }
    }
  });
  return {hs.slice(0, 1).clone(), hs[steps].clone(), cs[steps].clone(), hs, cs, acts, tcs, full, xh, rh, xc, rc,
          cand};
}

using LSTMBackward = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

// -> (dxw = dgates (T, B, 4H), dh0, dc0, dw_hh, dw_hr, dpeep (3, H), dg_h, dg_c, db_c; undefined where
// absent)
LSTMBackward lstm_backward(const Tensor& dy_, const Tensor& dh_last, const Tensor& dc_last,
                           const Tensor& w_hh, const OptTensor& w_hr, const OptTensor& peep_,
                           const OptTensor& g_h_, const OptTensor& g_c_, const OptTensor& alive_,
                           const Tensor& hs, const Tensor& cs, const Tensor& acts, const Tensor& tcs,
                           const OptTensor& full_, const OptTensor& xh_, const OptTensor& rh_,
                           const OptTensor& xc_, const OptTensor& rc_, const Tensor& cand,
                           const OptTensor& mask_, const OptTensor& zone_h_, const OptTensor& zone_c_,
                           int64_t onednn) {
  const Tensor dy = dy_.contiguous(), alive = contiguous_or_undefined(alive_);
  const Tensor mask = contiguous_or_undefined(mask_), zone_h = contiguous_or_undefined(zone_h_);
  const Tensor zone_c = contiguous_or_undefined(zone_c_);
  const Tensor peep = contiguous_or_undefined(peep_), g_h = contiguous_or_undefined(g_h_);
  const Tensor g_c = contiguous_or_undefined(g_c_), full = contiguous_or_undefined(full_);
  const Tensor xh = contiguous_or_undefined(xh_), rh = contiguous_or_undefined(rh_);
  const Tensor xc = contiguous_or_undefined(xc_), rc = contiguous_or_undefined(rc_);
  const int64_t steps = dy.size(0), B = dy.size(1), R = dy.size(2), H = cs.size(2), G = 4 * H;
  const bool proj = w_hr.has_value(), ln = g_h.defined(), has_peep = peep.defined();
  const auto opt = dy.options();
  Tensor dgates = at::empty({steps, B, G}, opt);
  Tensor drec = ln ? at::empty({steps, B, G}, opt) : dgates;     // of h W_hh^T
  Tensor dzc = ln ? at::empty({steps, B, H}, opt) : Tensor();    // of LN_c's output
  Tensor dhs = proj ? at::empty({steps, B, R}, opt) : Tensor();  // dL/dh_t (projected)
  Tensor dh = dh_last.contiguous().clone(), dc = dc_last.contiguous().clone();
  Linear back(w_hh.t(), B, onednn);
  std::optional<Linear> back_hr;
  if (proj) back_hr.emplace(w_hr->t(), B, onednn);
  RNNKIT_DISPATCH(dy, "lstm_backward", [&] {
    using T = scalar_t;
    const Vec<T> one(T(1));
    const T *pi = has_peep ? peep.data_ptr<T>() : nullptr, *pf = pi ? pi + H : nullptr,
            *po = pi ? pi + 2 * H : nullptr;
    const T *gh = ln ? g_h.data_ptr<T>() : nullptr, *gc = ln ? g_c.data_ptr<T>() : nullptr;
    for (int64_t t = steps - 1; t >= 0; --t) {
      const T *gy = dy.data_ptr<T>() + t * B * R, *a = acts.data_ptr<T>() + t * B * G;
      const T *tc = tcs.data_ptr<T>() + t * B * H, *c_prev = cs.data_ptr<T>() + t * B * H;
      T *d = dh.data_ptr<T>(), *dcp = dc.data_ptr<T>(), *dg = dgates.data_ptr<T>() + t * B * G;
      T* dr = drec.data_ptr<T>() + t * B * G;
      T* dz = ln ? dzc.data_ptr<T>() + t * B * H : nullptr;
      const T *xht = ln ? xh.data_ptr<T>() + t * B * G : nullptr,
              *xct = ln ? xc.data_ptr<T>() + t * B * H : nullptr;
      const T *rht = ln ? rh.data_ptr<T>() + t * B : nullptr, *rct = ln ? rc.data_ptr<T>() + t * B : nullptr;
      const bool* live = alive_at(alive, t, B);
      const T *zh = zone_h.defined() ? zone_h.data_ptr<T>() + t * B * R : nullptr,
              *zc = zone_c.defined() ? zone_c.data_ptr<T>() + t * B * H : nullptr;
      // dL/dh~ from dL/dh_t = d + gy: (1 - zone_h) times it
      auto grad_h_new = [&](int64_t b, int64_t i, int64_t c) {
        const Vec<T> g = load(d + b * R + i, c) + load(gy + b * R + i, c);
        return zh ? g - load(zh + b * R + i, c) * g : g;
      };
      Tensor ghp;  // with a projection: dL/d(o tanh(.)) = (dL/dh_t) W_hr
      if (proj) {
        T* dht = dhs.data_ptr<T>() + t * B * R;
        rows(B, R, [&](int64_t b) {
          if (dead(live, b)) return zero_row(dht + b * R, R);
          chunks<T>(R, [&](int64_t i, int64_t c) { grad_h_new(b, i, c).store(dht + b * R + i, c); });
        });
        ghp = (*back_hr)(dhs[t]);
      }
      const T* gp = proj ? ghp.data_ptr<T>() : nullptr;
      rows(B, G, [&](int64_t b) {
        T *dgb = dg + b * G, *dcb = dcp + b * H;
        if (dead(live, b)) {  // no gradient into a finished sequence's steps; dh, dc carried over
          zero_row(dgb, G);
          if (ln) zero_row(dr + b * G, G), zero_row(dz + b * H, H);
          return;
        }
        const T *ab = a + b * G, *tb = tc + b * H, *cb = c_prev + b * H;
        auto grad_h = [&](int64_t i, int64_t c) {
          return proj ? load(gp + b * H + i, c) : grad_h_new(b, i, c);
        };
        // dL/dc~ (before zoneout) from dL/dc_t, which dc holds
        auto grad_c_new = [&](int64_t i, int64_t c) {
          const Vec<T> g = load(dcb + i, c);
          return zc ? g - load(zc + b * H + i, c) * g : g;
        };
        // from dct = dL/dc_t: the gate gradients and dL/dc_{t-1} (into dc, in place)
        auto cell = [&](int64_t i, int64_t c, Vec<T> dct, const Vec<T>& dov) {
          if (pi) dct = dct + dov * load(po + i, c);
          const Vec<T> iv = load(ab + i, c), fv = load(ab + H + i, c), gv = load(ab + 2 * H + i, c);
          const Vec<T> dfv = dct * load(cb + i, c) * fv * (one - fv), div = dct * gv * iv * (one - iv);
          div.store(dgb + i, c), dfv.store(dgb + H + i, c);
          (dct * iv * (one - gv * gv)).store(dgb + 2 * H + i, c);
          Vec<T> dcprev = dct * fv;
          if (pi) dcprev = dcprev + div * load(pi + i, c) + dfv * load(pf + i, c);
          if (zc) dcprev = dcprev + load(zc + b * H + i, c) * load(dcb + i, c);  // dc still holds dL/dc_t
          dcprev.store(dcb + i, c);
        };
        chunks<T>(H, [&](int64_t i, int64_t c) {  // h = o tanh(u): do_pre and dL/du
          const Vec<T> g = grad_h(i, c), o = load(ab + 3 * H + i, c), th = load(tb + i, c);
          const Vec<T> dov = g * th * o * (one - o), dtc = g * o * (one - th * th);
          dov.store(dgb + 3 * H + i, c);
          if (ln) {
            dtc.store(dz + b * H + i, c);
          } else {
            cell(i, c, grad_c_new(i, c) + dtc, dov);
          }
        });
        if (ln) {  // through u = LN(c_t) g_c + b_c, then the gates; then through LN(h W_hh^T) g_h
          std::vector<T> scratch(H);
          T* u = scratch.data();
          chunks<T>(
              H, [&](int64_t i, int64_t c) { (load(dz + b * H + i, c) * load(gc + i, c)).store(u + i, c); });
          norm_backward(u, xct + b * H, rct[b], H, u);
          chunks<T>(H, [&](int64_t i, int64_t c) {
            cell(i, c, grad_c_new(i, c) + load(u + i, c), load(dgb + 3 * H + i, c));
          });
          T* v = dr + b * G;
          chunks<T>(G, [&](int64_t i, int64_t c) { (load(dgb + i, c) * load(gh + i, c)).store(v + i, c); });
          norm_backward(v, xht + b * G, rht[b], G, v);
        }
      });
      carry_back<T>(dh, back(drec[t]), gy, ptr_or_null<T>(mask), zh, live);
    }
  });
  const Tensor h_seen = mask.defined() ? hs.slice(0, 0, steps) * mask : hs.slice(0, 0, steps);
  const Tensor dw_hh = weight_grad(flat(drec), flat(h_seen), false, onednn).first;
  const Tensor dw_hr = proj ? weight_grad(flat(dhs), flat(full), false, onednn).first : Tensor();
  Tensor dpeep, dg_h, dg_c, db_c;
  if (has_peep) {
    dpeep = at::stack({(dgates.slice(2, 0, H) * cs.slice(0, 0, steps)).sum({0, 1}),
                       (dgates.slice(2, H, 2 * H) * cs.slice(0, 0, steps)).sum({0, 1}),
                       (dgates.slice(2, 3 * H) * cand).sum({0, 1})});
  }
  if (ln) dg_h = (dgates * xh).sum({0, 1}), dg_c = (dzc * xc).sum({0, 1}), db_c = dzc.sum({0, 1});
  return {dgates, dh, dc, dw_hh, dw_hr, dpeep, dg_h, dg_c, db_c};
}

}  // namespace

TORCH_LIBRARY(rnnkit_scan, m) {
  m.def(
      "elman_forward(Tensor xw, Tensor h0, Tensor w_hh, Tensor? alive, Tensor? mask, Tensor? zone, int act,"
      " int onednn) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "elman_backward(Tensor dy, Tensor dh_last, Tensor w_hh, Tensor hs, Tensor cand, Tensor? alive,"
      " Tensor? mask, Tensor? zone, int act, int onednn) -> (Tensor, Tensor, Tensor)");
  m.def(
      "gru_forward(Tensor xw, Tensor h0, Tensor w_hh, Tensor? b_hh, Tensor? alive, Tensor? mask, Tensor? zone,"
      " bool reset_after,"
      " int onednn) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "gru_backward(Tensor dy, Tensor dh_last, Tensor w_hh, bool has_bias, Tensor hs, Tensor rz, Tensor n,"
      " Tensor m, Tensor? alive, Tensor? mask, Tensor? zone, bool reset_after, int onednn)"
      " -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "jordan_forward(Tensor xw, Tensor y0, Tensor w_yh, Tensor w_hy, Tensor? b_y, Tensor? alive, Tensor? mask,"
      " Tensor? zone, int act, int out_act, int onednn) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "jordan_backward(Tensor dy, Tensor dy_last, Tensor w_yh, Tensor w_hy, bool has_bias, Tensor hs,"
      " Tensor ys, Tensor cand, Tensor? alive, Tensor? mask, Tensor? zone, int act, int out_act, int onednn)"
      " -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "lstm_forward(Tensor xw, Tensor h0, Tensor c0, Tensor w_hh, Tensor? w_hr, Tensor? peep, Tensor? g_h,"
      " Tensor? g_c, Tensor? b_c, Tensor? alive, Tensor? mask, Tensor? zone_h, Tensor? zone_c, int onednn)"
      " -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,"
      " Tensor)");
  m.def(
      "lstm_backward(Tensor dy, Tensor dh_last, Tensor dc_last, Tensor w_hh, Tensor? w_hr, Tensor? peep,"
      " Tensor? g_h, Tensor? g_c, Tensor? alive, Tensor hs, Tensor cs, Tensor acts, Tensor tcs, Tensor? full,"
      " Tensor? xh, Tensor? rh, Tensor? xc, Tensor? rc, Tensor cand, Tensor? mask, Tensor? zone_h,"
      " Tensor? zone_c, int onednn) -> (Tensor, Tensor, Tensor, Tensor,"
      " Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(rnnkit_scan, CPU, m) {
  m.impl("elman_forward", &elman_forward);
  m.impl("elman_backward", &elman_backward);
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
  m.impl("jordan_forward", &jordan_forward);
  m.impl("jordan_backward", &jordan_backward);
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
}
