import Tensors

extension CogVideoXConfiguration {
    /// The hidden width of the feed-forward's first projection: `8D` for a gated activation, else `4D`.
    var feedForwardProjectionWidth: Int {
        if feedForwardActivation?.isGated == true { return 8 * innerDim }
        return 4 * innerDim
    }

    /// The video tokens `(F/p_t)·(H/p)·(W/p)` of a `frames × height × width` latent (sizes already bounded).
    /// - Throws: `malformedConfig` when the latent is not divisible by the patch.
    func videoTokens(frames f: Int, height h: Int, width w: Int) throws(ModelLoadError) -> Int {
        guard f % temporalPatch == 0, h % patchSize == 0, w % patchSize == 0 else {
            throw .malformedConfig(reason: "latent \(f)×\(h)×\(w) must be divisible by the patch "
                                   + "\(temporalPatch)×\(patchSize)×\(patchSize) (patch_size_t × patch_size²)")
        }
        return (f / temporalPatch) * (h / patchSize) * (w / patchSize)
    }

    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, rotary and
    /// softmax are not counted), for `s` video and `l` text tokens per sample.
    ///
    /// Per block and joint token (`N = L + S`): q, k, v and out `4D²`, feed-forward `D·ffIn + 4D·D`;
    /// attention `4·N·D` per token (QKᵀ and AV); per sample the two adaptive norms `2·T·6D`. Plus the
    /// patch and text projections, the time (and ofs) MLPs, `norm_out.linear` and `proj_out`.
    public func forwardFLOPs(batch b: Int, videoTokens s: Int, textTokens l: Int) -> Double {
        let d = Double(innerDim), bb = Double(b), ss = Double(s), ll = Double(l), n = ss + ll
        let t = Double(timeEmbedDim)
        var f = 2 * bb * ss * Double(patchWidth) * d + 2 * bb * ll * Double(textEmbedDim) * d
        f += 2 * bb * (d * t + t * t)
        if let o = ofsEmbedDim.map(Double.init) { f += 2 * bb * 2 * o * o }
        var block = 2 * bb * n * (4 * d * d + d * Double(feedForwardProjectionWidth) + 4 * d * d)
        block += 4 * bb * n * n * d + 2 * 2 * bb * t * 6 * d
        f += Double(numLayers) * block
        f += 2 * bb * t * 2 * d + 2 * bb * ss * d * Double(outputTokenWidth)
        return f
    }

    /// Estimated bytes of the activations alive at once inside a block (the largest set): the joint
    /// sequence, its normalised copy, the fused q/k/v projection and q, k, v, the attention output and its
    /// projection (`10·D` per token), the feed-forward's first projection and its activation, plus one
    /// query block of attention scores per thread.
    public func activationBytesEstimate(batch b: Int, videoTokens s: Int, textTokens l: Int) -> Int {
        Int(min(activationBytes(batch: b, videoTokens: s, textTokens: l), Double(Int.max / 2)))
    }

    /// ``activationBytesEstimate(batch:videoTokens:textTokens:)`` in Double (no overflow for any sizes).
    func activationBytes(batch b: Int, videoTokens s: Int, textTokens l: Int) -> Double {
        let n = Double(s) + Double(l)
        let perToken = Double(14 * innerDim + feedForwardProjectionWidth)
        let scores = Double(attentionQueryBlock) * n * Double(Parallelism.threadCount)
        return 4 * (Double(b) * n * perToken + scores)
    }
}

extension CogVideoXTransformer {
    /// Random inputs of a CogVideoX pipeline shape: latent `[B, F, in_channels, H, W]`, `textTokens` text
    /// features, timestep 500 (sigma 0.5) and, for an ofs model, ofs 2.0 as the I2V pipelines pass it.
    ///
    /// - Throws: `malformedConfig` for sizes outside ``SizeLimits``, not divisible by the patch sizes, or a
    ///   text length other than `max_text_seq_length` for a model with a positional table.
    public static func randomInputs(
        configuration c: CogVideoXConfiguration, batch b: Int, frames f: Int, height h: Int, width w: Int,
        textTokens l: Int, seed: UInt64
    ) throws(ModelLoadError) -> CogVideoXInput {
        for (field, v) in [("batch", b), ("latent_frames", f), ("latent_height", h), ("latent_width", w),
                           ("text_tokens", l)] {
            try SizeLimits.checkInput(field, v)
        }
        try SizeLimits.checkInputElements("hidden_states", [b, f, c.inChannels, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, c.textEmbedDim])
        _ = try c.videoTokens(frames: f, height: h, width: w)
        if c.usesPositionalTable, l != c.maxTextSeqLength {
            throw .malformedConfig(reason: "text_tokens = \(l): this model's positional table needs max_text_seq_length = \(c.maxTextSeqLength)")
        }
        var g = SeededGenerator(seed: seed)
        do {
            return CogVideoXInput(hiddenStates: try .randomNormal(shape: [b, f, c.inChannels, h, w], using: &g),
                                  encoderHiddenStates: try .randomNormal(shape: [b, l, c.textEmbedDim], using: &g),
                                  timestep: try Tensor(shape: [b], repeating: 500),
                                  ofs: c.ofsEmbedDim == nil ? nil : try Tensor(shape: [b], repeating: 2))
        } catch {
            throw .tensor(error)
        }
    }
}
