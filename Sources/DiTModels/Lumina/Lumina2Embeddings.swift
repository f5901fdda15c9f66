import Tensors

/// diffusers' `Lumina2CombinedTimestepCaptionEmbedding`: `temb = MLP_t(sin(t))` `[B, min(D, 1024)]`, and
/// every caption token through `caption_embedder` = `Linear(RMSNorm(x))` `[B, L, D]`.
struct Lumina2TimeCaptionEmbedding: Sendable {
    /// `timestep_embedder`.
    let timestepEmbedder: TimestepMLP
    /// `caption_embedder.0`.
    let captionNorm: RMSNorm
    /// `caption_embedder.1`.
    let captionProjection: Linear

    /// Takes `timestep_embedder` and `caption_embedder` of the scope.
    init(_ weights: WeightScope, configuration c: Lumina2Configuration) {
        let ch = LuminaNextTimeCaptionEmbedding.frequencyChannels, dt = c.conditioningDim
        timestepEmbedder = TimestepMLP(weights["timestep_embedder"], in: ch, hidden: dt, out: dt)
        captionNorm = RMSNorm(weights["caption_embedder.0"], dim: c.capFeatDim, eps: c.normEps)
        captionProjection = Linear(weights["caption_embedder.1"], in: c.capFeatDim, out: c.hiddenSize)
    }

    /// `temb` for one timestep per sample (256-channel sinusoid, cos first, shift 0).
    func time(_ timesteps: [Float]) throws(TensorError) -> Tensor {
        try timestepEmbedder(sinusoidalTimestepEmbedding(
            timesteps, dim: LuminaNextTimeCaptionEmbedding.frequencyChannels, flipSinToCos: true, downscaleFreqShift: 0))
    }

    /// The embedded caption `[B, L, D]`.
    func caption(_ x: Tensor) throws(TensorError) -> Tensor {
        try captionProjection(captionNorm(x))
    }
}

/// The positions and rotary tables of one Lumina2 call (diffusers' `Lumina2RotaryPosEmbed`).
///
/// Sample `i` with `c_i` caption tokens (the number of ones in its mask) and `S = (H/p)(W/p)` image tokens
/// has the joint sequence `[caption tokens 0 ..< c_i, image tokens]` of length `s_i = c_i + S`, padded to
/// `P = max s_i`. Position ids are `(j, 0, 0)` for caption token j, `(c_i, row, col)` for the image tokens
/// and `(0, 0, 0)` for padding; each axis rotates its channel pairs by `pos · θ^(−2k/d)` (θ = 10000,
/// frequencies in Double), pairs interleaved, axes one after the other. The caption refiner's table
/// keeps the first `c_i` rows and is zero beyond (diffusers zero-fills it, so padded caption queries and
/// keys vanish); the image refiner's table is the image part.
struct Lumina2RotaryTables: Sendable {
    /// cos/sin over the padded joint sequence, `[B, P, Dh]` each.
    let joint: PerSampleRotary
    /// cos/sin over the caption tokens, `[B, L, Dh]`.
    let caption: PerSampleRotary
    /// cos/sin over the image tokens, `[B, S, Dh]`.
    let image: PerSampleRotary

    /// The rotary base.
    static let theta: Double = 10000

    /// Tables for `captionLengths` (per sample), a caption of `captionTokens` tokens and a `rows × cols`
    /// patch grid.
    /// - Throws: `invalidArgument` when a position falls outside `axes_lens` (diffusers' tables end there).
    init(configuration c: Lumina2Configuration, captionLengths: [Int], captionTokens l: Int,
                rows: Int, cols: Int) throws(TensorError) {
        let n = c.axesDimRope.count
        let s = rows * cols
        let lengths = captionLengths.map { $0 + s }
        let p = lengths.max() ?? s
        let maxCaption = captionLengths.max() ?? 0
        let limits = [maxCaption + 1, rows, cols]
        for a in 0..<n where limits[a] > c.axesLens[a] {
            let what = ["caption length + 1 (the image tokens' caption position)", "patch rows", "patch columns"][a]
            throw .invalidArgument(operation: "Lumina2 rotary embedding",
                                   reason: "\(what) = \(limits[a]) exceeds axes_lens[\(a)] = \(c.axesLens[a])")
        }
        let b = captionLengths.count
        var positions = [Float](repeating: 0, count: b * p * n)
        for (i, cl) in captionLengths.enumerated() {
            for j in 0..<cl { positions[(i * p + j) * n] = Float(j) }
            for r in 0..<rows {
                for col in 0..<cols {
                    let base = (i * p + cl + r * cols + col) * n
                    let ids = [Float(cl), Float(r), Float(col)]
                    for a in 0..<n { positions[base + a] = ids[a] }
                }
            }
        }
        let t = try RotaryEmbedding.tables(positions: Tensor(shape: [b * p, n], scalars: positions),
                                           axesDims: c.axesDimRope, theta: Self.theta, layout: .interleaved)
        let dh = c.headDim
        let uniform = Set(captionLengths).count <= 1
        joint = PerSampleRotary(cos: try t.cos.reshaped([b, p, dh]), sin: try t.sin.reshaped([b, p, dh]), uniform: uniform)
        /// `[B, length, Dh]`: sample i's joint rows `ranges[i]`, then zeros.
        func pick(_ table: Tensor, _ ranges: [Range<Int>], length: Int) throws(TensorError) -> Tensor {
            let src = table.scalars
            var out = [Float](repeating: 0, count: b * length * dh)
            for (i, r) in ranges.enumerated() {
                for (k, j) in r.enumerated() {
                    for x in 0..<dh { out[(i * length + k) * dh + x] = src[(i * p + j) * dh + x] }
                }
            }
            return try Tensor(shape: [b, length, dh], scalars: out)
        }
        let captionRows = captionLengths.map { 0..<min($0, l) }
        let imageRows = captionLengths.map { $0..<($0 + s) }
        caption = PerSampleRotary(cos: try pick(t.cos, captionRows, length: l), sin: try pick(t.sin, captionRows, length: l),
                                  uniform: uniform)
        image = PerSampleRotary(cos: try pick(t.cos, imageRows, length: s), sin: try pick(t.sin, imageRows, length: s),
                                uniform: uniform)
    }
}

/// Rotary tables that may differ per sample: cos and sin `[B, T, Dh]`.
struct PerSampleRotary: Sendable {
    /// `[B, T, Dh]`.
    public var cos: Tensor
    /// `[B, T, Dh]`.
    public var sin: Tensor
    /// True when every sample's tables are the same (then sample 0's serve the batch).
    public var uniform: Bool

    /// Rotates every head of `x` `[B, T, heads·Dh]` (interleaved pairs) by each sample's tables.
    public func apply(_ x: Tensor, heads: Int) throws(TensorError) -> Tensor {
        let (b, t, dh) = (cos.shape[0], cos.shape[1], cos.shape[2])
        guard x.rank == 3, x.shape[0] == b, x.shape[1] == t else {
            throw .shapeMismatch(operation: "Lumina2 rotary", shapes: [x.shape, cos.shape], reason: "tables and tokens disagree")
        }
        if uniform || b == 1 {
            return try RotaryEmbedding.apply(x, cos: cos.slice(axis: 0, 0..<1).reshaped([t, dh]),
                                             sin: sin.slice(axis: 0, 0..<1).reshaped([t, dh]), heads: heads)
        }
        var parts: [Tensor] = []
        for i in 0..<b {
            parts.append(try RotaryEmbedding.apply(x.slice(axis: 0, i..<(i + 1)),
                                                   cos: cos.slice(axis: 0, i..<(i + 1)).reshaped([t, dh]),
                                                   sin: sin.slice(axis: 0, i..<(i + 1)).reshaped([t, dh]), heads: heads))
        }
        return try Tensor.concatenate(parts, axis: 0)
    }

    /// The tables of the samples `indices`.
    public func selecting(_ indices: [Int]) throws(TensorError) -> PerSampleRotary {
        PerSampleRotary(cos: try cos.gatheringRows(indices), sin: try sin.gatheringRows(indices), uniform: uniform)
    }
}
