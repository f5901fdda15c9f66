import Foundation
import Tensors

// The layers Lumina-Next and Lumina2 share (LuminaNext/ and Lumina2/ hold each network): widths, the
// grouped-head attention, the adaptive norms, the SwiGLU feed-forward and the forward's argument checks.
// The fused row passes they run on are in LuminaKernels.swift.

/// Widths both Lumina models derive from the model width.
enum LuminaWidths {
    /// The conditioning width `min(D, 1024)` of the timestep embedding, the adaptive norms and `norm_out`.
    static func conditioning(_ dim: Int) -> Int { min(dim, 1024) }
    /// Width of the sinusoidal timestep features of both time-caption embeddings.
    static let timestepChannels = 256
}

// MARK: Attention with grouped key/value heads

/// The head layout of a Lumina attention layer: `heads` query heads of `headDim` channels sharing
/// `kvHeads` key/value heads (grouped-query attention; `heads` is a multiple of `kvHeads`).
struct LuminaHeads: Sendable, Equatable {
    /// Query heads.
    let heads: Int
    /// Key/value heads.
    let kvHeads: Int
    /// Channels per head (`hidden_size / num_attention_heads`, floored, as diffusers' `dim_head`).
    let headDim: Int

    /// A layout.
    init(heads: Int, kvHeads: Int, headDim: Int) {
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
    }

    /// Query width `heads · headDim` (the width of `to_q` and the input of `to_out`).
    var queryWidth: Int { heads * headDim }
    /// Key/value width `kvHeads · headDim`.
    var kvWidth: Int { kvHeads * headDim }
    /// Query heads per key/value head.
    var groupSize: Int { heads / kvHeads }
}

/// Scaled-dot-product attention with grouped key/value heads, as diffusers' Lumina processors run it:
/// key/value head `j` serves query heads `j·g ..< (j+1)·g` (`g = heads / kvHeads`; diffusers repeats
/// each key/value head `g` times in place).
///
/// - Parameters:
///   - q: `[B, Sq, heads·Dh]`; `k`, `v`: `[B, Sk, kvHeads·Dh]`.
///   - keyMask: `[B, Sk]` (nonzero = attend), or nil.
///   - scale: the softmax scale (`1/√Dh` when nil).
///   - precision: the model's weight precision (bf16 products for bf16/int8 weights where the CPU has them).
func luminaAttention(
    q: Tensor, k: Tensor, v: Tensor, layout: LuminaHeads, keyMask: Tensor?, scale: Float?, precision: WeightPrecision
) throws(TensorError) -> Tensor {
    let g = layout.groupSize
    let key = g == 1 ? k : try repeatingHeads(k, groups: layout.kvHeads, times: g)
    let value = g == 1 ? v : try repeatingHeads(v, groups: layout.kvHeads, times: g)
    return try attention(query: q, key: key, value: value, heads: layout.heads,
                         mask: keyMask.map { .keys($0) }, scale: scale, precision: precision)
}

/// `[B, S, n·Dh]` → `[B, S, n·times·Dh]`, each head's `Dh` channels repeated `times` times in place
/// (torch's `x.unsqueeze(3).repeat(1, 1, 1, times, 1).flatten(2, 3)` on `[B, S, n, Dh]`).
func repeatingHeads(_ x: Tensor, groups n: Int, times: Int) throws(TensorError) -> Tensor {
    guard x.rank == 3, n > 0, times > 0, x.shape[2] % n == 0 else {
        throw .shapeMismatch(operation: "repeat key/value heads", shapes: [x.shape],
                             reason: "expected [B, S, \(n)·head_dim]")
    }
    let rows = x.shape[0] * x.shape[1], width = x.shape[2], dh = width / n
    let outWidth = width * times
    return x.withUnsafeBufferPointer { src in
        Tensor(uninitializedShape: [x.shape[0], x.shape[1], outWidth]) { dst in
            Parallelism.forEachChunk(rows, costPerItem: outWidth) { range in
                for r in range {
                    let s = src.baseAddress! + r * width, o = dst.baseAddress! + r * outWidth
                    for h in 0..<n {
                        for t in 0..<times {
                            (o + (h * times + t) * dh).update(from: s + h * dh, count: dh)
                        }
                    }
                }
            }
        }
    }
}

// MARK: Norms

/// diffusers' `LuminaRMSNormZero` (Lumina-Next and Lumina2 blocks): `linear(silu(emb))` → (scale_msa,
/// gate_msa, scale_mlp, gate_mlp), and `x̂ = RMSNorm(x)·(1 + scale_msa)` with the norm's learned scale
/// (no shift).
///
/// The conditioning is `min(D, 1024)` wide, as in diffusers.
struct LuminaRMSNormZero: Sendable {
    /// `linear`: `[4D, min(D, 1024)]`.
    let linear: Linear
    /// `norm` (RMSNorm with weight `[D]`).
    let norm: RMSNorm

    /// The modulated input and the remaining modulation parameters (each `[B, D]`).
    struct Output: Sendable {
        /// `RMSNorm(x)·(1 + scale_msa)`, `[B, S, D]`.
        let normalized: Tensor
        /// Gate of the attention branch (before its tanh).
        let gateMSA: Tensor
        /// Scale of the feed-forward branch's norm.
        let scaleMLP: Tensor
        /// Gate of the feed-forward branch (before its tanh).
        let gateMLP: Tensor
    }

    /// Takes `linear` and `norm` of the scope.
    init(_ weights: WeightScope, dim: Int, eps: Float) {
        linear = Linear(weights["linear"], in: LuminaWidths.conditioning(dim), out: 4 * dim)
        norm = RMSNorm(weights["norm"], dim: dim, eps: eps)
    }

    /// Applies the norm to `x` `[B, S, D]` with conditioning `emb` `[B, min(D, 1024)]`.
    func callAsFunction(_ x: Tensor, emb: Tensor) throws(TensorError) -> Output {
        let c = try modulationChunks(linear, emb, count: 4)
        return Output(normalized: try LuminaKernels.rmsNormScaled(x, weight: norm.weight, eps: norm.eps, scale: c[0]),
                      gateMSA: c[1], scaleMLP: c[2], gateMLP: c[3])
    }
}

/// diffusers' `LuminaLayerNormContinuous` as both Lumina models build it (`elementwise_affine=False`,
/// `eps=1e-6`, bias, `out_dim` set): `linear_2(LayerNorm(x)·(1 + linear_1(silu(c))))`.
struct LuminaLayerNormContinuous: Sendable {
    /// `linear_1`: `[D, conditioning]`.
    let linear1: Linear
    /// `linear_2`: `[out, D]`.
    let linear2: Linear
    /// The LayerNorm epsilon.
    let eps: Float

    /// Takes `linear_1` and `linear_2` of the scope.
    init(_ weights: WeightScope, dim: Int, conditioningDim: Int, outDim: Int, eps: Float = 1e-6) {
        linear1 = Linear(weights["linear_1"], in: conditioningDim, out: dim)
        linear2 = Linear(weights["linear_2"], in: dim, out: outDim)
        self.eps = eps
    }

    /// `[B, S, D]` with conditioning `[B, conditioning]` → `[B, S, out]`.
    func callAsFunction(_ x: Tensor, conditioning: Tensor) throws(TensorError) -> Tensor {
        let scale = try linear1(silu(conditioning))
        return try linear2(layerNormModulated(x, eps: eps, scale: scale, shift: nil))
    }
}

// MARK: Feed-forward

/// diffusers' `LuminaFeedForward`: `linear_2(silu(linear_1(x)) · linear_3(x))`, no biases.
///
/// The SiLU runs in place on `linear_1`'s output and the product in place on it too, so the hidden layer
/// costs two `[..., inner]` tensors; the weights are used as loaded (not stacked into a copy).
struct LuminaFeedForward: Sendable {
    /// `linear_1`: `[inner, D]` (through the SiLU).
    let linear1: Linear
    /// `linear_3`: `[inner, D]` (the gate's other factor).
    let linear3: Linear
    /// `linear_2`: `[D, inner]`.
    let linear2: Linear

    /// Takes `linear_1`, `linear_2` and `linear_3` of the scope.
    init(_ weights: WeightScope, dim: Int, inner: Int) {
        linear1 = Linear(weights["linear_1"], in: dim, out: inner, bias: false)
        linear2 = Linear(weights["linear_2"], in: inner, out: dim, bias: false)
        linear3 = Linear(weights["linear_3"], in: dim, out: inner, bias: false)
    }

    /// The hidden width diffusers gives a `LuminaFeedForward` built with `inner_dim = base`:
    /// `int(ffn_dim_multiplier · base)` when a multiplier is set, then rounded up to a multiple of
    /// `multiple_of`.
    ///
    /// - Returns: nil when the multiplier is not finite, `multiple_of` is not positive, or the width is
    ///   negative or beyond ``SizeLimits/maximumExtent`` (diffusers fails to build such a layer). A width
    ///   of 0 (a tiny multiplier) is what diffusers builds too: a feed-forward that outputs zeros.
    static func innerDim(base: Int, multipleOf: Int, multiplier: Double?) -> Int? {
        var inner = Double(base)
        if let multiplier {
            let scaled = (multiplier * inner).rounded(.towardZero)
            guard scaled.isFinite, abs(scaled) <= Double(1 << 40) else { return nil }
            inner = scaled
        }
        guard multipleOf > 0 else { return nil }
        let m = Double(multipleOf)
        let rounded = m * ((inner + m - 1) / m).rounded(.down)
        guard rounded >= 0, rounded <= Double(SizeLimits.maximumExtent) else { return nil }
        return Int(rounded)
    }

    /// Applies the feed-forward to `[..., D]`.
    func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        var hidden = try linear(x, weight: linear1.weight, bias: nil, activation: .silu)
        try LuminaKernels.multiply(&hidden, by: linear3(x))
        return try linear2(hidden)
    }
}

// MARK: Argument checks

/// Argument checks shared by both Lumina models.
enum LuminaInputChecks {
    /// The sizes of a call.
    struct Sizes {
        let batch: Int, height: Int, width: Int, textTokens: Int
        /// Image tokens `(H/p)(W/p)`.
        let imageTokens: Int
    }

    /// A finite latent `[B, in_channels, H, W]` (H, W multiples of the patch) and finite caption features
    /// `[B, L > 0, width]`.
    static func latentAndCaption(
        _ latent: Tensor, _ caption: Tensor, inChannels: Int, patch: Int, captionWidth: (Int, String), operation: String
    ) throws(TensorError) -> Sizes {
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: operation, reason: reason) }
        let s = latent.shape
        guard s.count == 4, s[1] == inChannels, s[0] > 0, s[2] > 0, s[3] > 0 else {
            throw fail("hidden_states must be [B, in_channels = \(inChannels), H, W] with B, H, W > 0, got \(s)")
        }
        let (b, h, w) = (s[0], s[2], s[3])
        guard h % patch == 0, w % patch == 0 else { throw fail("the latent \(h)×\(w) is not divisible by patch_size = \(patch)") }
        let e = caption.shape
        guard e.count == 3, e[0] == b, e[1] > 0, e[2] == captionWidth.0 else {
            throw fail("encoder_hidden_states must be [B = \(b), L > 0, \(captionWidth.1) = \(captionWidth.0)], got \(e)")
        }
        for (name, v) in [("hidden_states", latent), ("encoder_hidden_states", caption)] where !v.isFinite {
            throw fail("\(name) holds NaN or infinite values")
        }
        return Sizes(batch: b, height: h, width: w, textTokens: e[1], imageTokens: (h / patch) * (w / patch))
    }

    /// A `[B, L]` mask of zeros and ones; with `requireToken`, every sample has at least one 1.
    static func binaryMask(
        _ m: Tensor, batch b: Int, length l: Int, name: String, operation: String, requireToken: Bool
    ) throws(TensorError) {
        guard m.shape == [b, l] else {
            throw .shapeMismatch(operation: operation, shapes: [m.shape], reason: "\(name) must be [B, L] = [\(b), \(l)]")
        }
        let v = m.scalars
        guard v.allSatisfy({ $0 == 0 || $0 == 1 }) else {
            throw .invalidArgument(operation: operation, reason: "\(name) must hold only 0 (padding) and 1 (token)")
        }
        if requireToken {
            for i in 0..<b where !v[(i * l)..<((i + 1) * l)].contains(1) {
                throw .invalidArgument(operation: operation,
                                       reason: "\(name) of sample \(i) selects no token (diffusers would divide by zero)")
            }
        }
    }

    /// The timestep values: `[B]`, or `[1]` for every sample; finite.
    static func timesteps(_ t: Tensor, batch b: Int, operation: String) throws(TensorError) -> [Float] {
        guard t.rank == 1, t.shape[0] == b || t.shape[0] == 1 else {
            throw .shapeMismatch(operation: operation, shapes: [t.shape], reason: "timestep must be [B = \(b)] or [1]")
        }
        let v = t.scalars
        guard v.allSatisfy(\.isFinite) else {
            throw .invalidArgument(operation: operation, reason: "timestep holds NaN or infinite values: \(v)")
        }
        return v.count == b ? v : Array(repeating: v[0], count: b)
    }
}
