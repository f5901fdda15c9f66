import Tensors

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

/// Widths both Lumina models derive from the model width.
enum LuminaWidths {
    /// The conditioning width `min(D, 1024)` of the timestep embedding, the adaptive norms and `norm_out`.
    static func conditioning(_ dim: Int) -> Int { min(dim, 1024) }
}
