import Tensors

/// The per-sample modulation parameters `linear(silu(emb))` split into equal `[B, D]` chunks, in the
/// order the projection's rows are laid out.
func modulationChunks(_ projection: Linear, _ emb: Tensor, count: Int) throws(TensorError) -> [Tensor] {
    try projection(silu(emb)).chunked(count, axis: 1)
}

/// diffusers' `AdaLayerNormZero` with its built-in LayerNorm (no affine, ε = 1e-6):
/// `linear(silu(emb))` → (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp), and
/// `x̂ = LN(x)·(1 + scale_msa) + shift_msa`.
public struct AdaLayerNormZero: Sendable {
    /// `[6D, D]`.
    public let linear: Linear
    /// The LayerNorm epsilon.
    public let eps: Float

    /// The modulated input and the remaining modulation parameters, each `[B, D]`.
    public struct Output: Sendable {
        /// `LN(x)·(1 + scale_msa) + shift_msa`, `[B, S, D]`.
        public let normalized: Tensor
        /// Gate of the attention branch.
        public let gateMSA: Tensor
        /// Shift of the feed-forward branch's norm.
        public let shiftMLP: Tensor
        /// Scale of the feed-forward branch's norm.
        public let scaleMLP: Tensor
        /// Gate of the feed-forward branch.
        public let gateMLP: Tensor
    }

    /// Takes `linear` of the scope.
    public init(_ weights: WeightScope, dim: Int, eps: Float = 1e-6) {
        linear = Linear(weights["linear"], in: dim, out: 6 * dim)
        self.eps = eps
    }

    /// Applies the norm to `x` `[B, S, D]` with conditioning `emb` `[B, D]`.
    public func callAsFunction(_ x: Tensor, emb: Tensor) throws(TensorError) -> Output {
        let c = try modulationChunks(linear, emb, count: 6)
        let n = try layerNormModulated(x, eps: eps, scale: c[1], shift: c[0])
        return Output(normalized: n, gateMSA: c[2], shiftMLP: c[3], scaleMLP: c[4], gateMLP: c[5])
    }
}

/// diffusers' `AdaLayerNormZeroSingle`: `linear(silu(emb))` → (shift, scale, gate) and
/// `x̂ = LN(x)·(1 + scale) + shift` (LayerNorm without affine, ε = 1e-6).
public struct AdaLayerNormZeroSingle: Sendable {
    /// `[3D, D]`.
    public let linear: Linear
    /// The LayerNorm epsilon.
    public let eps: Float

    /// Takes `linear` of the scope.
    public init(_ weights: WeightScope, dim: Int, eps: Float = 1e-6) {
        linear = Linear(weights["linear"], in: dim, out: 3 * dim)
        self.eps = eps
    }

    /// Returns the modulated `x` `[B, S, D]` and the gate `[B, D]`.
    public func callAsFunction(_ x: Tensor, emb: Tensor) throws(TensorError) -> (normalized: Tensor, gate: Tensor) {
        let c = try modulationChunks(linear, emb, count: 3)
        return (try layerNormModulated(x, eps: eps, scale: c[1], shift: c[0]), c[2])
    }
}

/// diffusers' `AdaLayerNormContinuous` with a non-affine LayerNorm: `linear(silu(cond))` → (scale, shift)
/// — note the order, scale first — and `x̂ = LN(x)·(1 + scale) + shift`.
public struct AdaLayerNormContinuous: Sendable {
    /// `[2D, conditioning]`.
    public let linear: Linear
    /// The LayerNorm epsilon.
    public let eps: Float

    /// Takes `linear` of the scope.
    public init(_ weights: WeightScope, dim: Int, conditioningDim: Int, eps: Float) {
        linear = Linear(weights["linear"], in: conditioningDim, out: 2 * dim)
        self.eps = eps
    }

    /// Applies the norm to `x` `[B, S, D]` with conditioning `[B, conditioningDim]`.
    public func callAsFunction(_ x: Tensor, conditioning: Tensor) throws(TensorError) -> Tensor {
        let c = try modulationChunks(linear, conditioning, count: 2)
        return try layerNormModulated(x, eps: eps, scale: c[0], shift: c[1])
    }
}

/// `residual + gate·x` with a per-sample gate `[B, D]` broadcast over the tokens of `x` `[B, S, D]`
/// (the gated residual updates of adaLN-Zero blocks).
public func addingGated(_ residual: Tensor, _ x: Tensor, gate: Tensor) throws(TensorError) -> Tensor {
    guard gate.rank == 2 else {
        throw .shapeMismatch(operation: "gated residual", shapes: [x.shape, gate.shape], reason: "gate must be [B, D]")
    }
    return try addingGated(residual, x, gate: .perSample(gate))
}
