import Tensors

extension WanConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, RoPE and softmax
    /// are not counted), for `s` video tokens, `l` text tokens and `n` image tokens per sample.
    ///
    /// Per block and video token: self-attention projections `4D²`, cross-attention q/out `2D²`,
    /// feed-forward `2·D·ffn`; per context token `2D²` (cross k, v; image tokens through `add_k/v_proj`
    /// when the model has them); attention `2·S·D` per query for QKᵀ and AV against each key set. Plus the
    /// patch embedding, the condition embedder and the output projection.
    public func forwardFLOPs(batch b: Int, videoTokens s: Int, textTokens l: Int, imageTokens n: Int = 0) -> Double {
        let c = self
        let d = Double(c.innerDim), bb = Double(b), ss = Double(s), ll = Double(l), nn = Double(n)
        let patchIn = Double(c.inChannels * c.patchSize.reduce(1, *))
        var f = 2 * bb * ss * patchIn * d
        f += 2 * bb * (Double(c.freqDim) * d + d * d + d * 6 * d)
        f += 2 * bb * ll * (Double(c.textDim) * d + d * d)
        if let e = c.imageDim { f += 2 * bb * nn * (Double(e) * Double(e) + Double(e) * d) }
        let context = ll + nn  // image tokens are keys either way (joined or through add_k/v_proj)
        var block = 2 * bb * ss * (4 * d * d + 2 * d * d + 2 * d * Double(c.ffnDim))
        block += 2 * bb * context * 2 * d * d
        block += 4 * bb * ss * ss * d + 4 * bb * ss * context * d
        f += Double(c.numLayers) * block
        f += 2 * bb * ss * d * Double(c.outputTokenWidth)
        return f
    }

    /// Estimated bytes of the activations alive at once inside a block (the largest set): the tokens, the
    /// normalised copy, q, k, v and their normalised/rotated copies, the attention output and the
    /// feed-forward hidden layer before and after the activation — about `(10·D + 2·ffn)·S` floats —
    /// plus the context keys/values and one query block of attention scores per thread.
    public func activationBytesEstimate(batch b: Int, videoTokens s: Int, textTokens l: Int, imageTokens n: Int = 0) -> Int {
        let c = self
        let scores = attentionQueryBlock * max(s, l + n) * Parallelism.threadCount
        return 4 * (b * s * (10 * c.innerDim + 2 * c.ffnDim) + 3 * b * (l + n) * c.innerDim + scores)
    }

}

extension WanTransformer {
    /// Random inputs of a Wan pipeline shape: latent `[B, in_channels, F, H, W]`, `textTokens` text
    /// features, timestep 500 (sigma 0.5), and for image-conditioned configurations `imageTokens` image
    /// features (two images per sample with `pos_embed_seq_len`).
    public static func randomInputs(
        configuration c: WanConfiguration, batch b: Int, frames f: Int, height h: Int, width w: Int,
        textTokens l: Int, imageTokens n: Int, seed: UInt64
    ) throws(ModelLoadError) -> WanInput {
        for (field, v) in [("batch", b), ("latent_frames", f), ("latent_height", h), ("latent_width", w),
                           ("text_tokens", l), ("image_tokens", c.imageDim == nil ? 1 : n)] {
            try SizeLimits.checkInput(field, v)
        }
        try SizeLimits.checkInputElements("hidden_states", [b, c.inChannels, f, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, c.textDim])
        if let e = c.imageDim { try SizeLimits.checkInputElements("encoder_hidden_states_image", [2 * b, n, e]) }
        let p = c.patch
        guard f % p.t == 0, h % p.h == 0, w % p.w == 0 else {
            throw .malformedConfig(reason: "latent \(f)×\(h)×\(w) must be divisible by patch_size \(c.patchSize)")
        }
        var g = SeededGenerator(seed: seed)
        do {
            var image: Tensor? = nil
            if let e = c.imageDim {
                let shape = c.posEmbedSeqLen.map { [2 * b, $0 / 2, e] } ?? [b, n, e]
                image = try .randomNormal(shape: shape, using: &g)
            }
            return WanInput(hiddenStates: try .randomNormal(shape: [b, c.inChannels, f, h, w], using: &g),
                            timestep: try Tensor(shape: [b], repeating: 500),
                            encoderHiddenStates: try .randomNormal(shape: [b, l, c.textDim], using: &g),
                            encoderHiddenStatesImage: image)
        } catch {
            throw .tensor(error)
        }
    }
}
