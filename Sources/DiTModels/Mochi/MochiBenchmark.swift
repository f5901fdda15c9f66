import Tensors

extension MochiConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, RoPE, softmax
    /// and the attention pool's scores are not counted), for `s` visual and `l` caption tokens per sample.
    ///
    /// Per block and visual token: q, k, v and out `4D²`, the feed-forward `D·ffIn + ffInner·D` (ffIn =
    /// 2·ffInner when gated); per caption token: q, k, v `3·P·D`, and in every block but the last the
    /// output `D·P` and the text feed-forward; attention `4·S·(S + L)·D` for the visual queries plus
    /// `4·L·(S + L)·D` for the caption queries (not in the last block); the two modulation projections
    /// per sample; plus the patch embedding, the time embedder, the caption projection and pool, the
    /// output norm's projection and `proj_out`.
    public func forwardFLOPs(batch b: Int, visualTokens s: Int, textTokens l: Int) -> Double {
        let d = Double(innerDim), p = Double(pooledProjectionDim), bb = Double(b), ss = Double(s), ll = Double(l)
        let e = Double(textEmbedDim)
        let gated = feedForwardActivation.isGated ? 2.0 : 1.0
        let ff = Double(feedForwardInnerDim), ffc = Double(contextFeedForwardInnerDim)
        var f = 2 * bb * ss * Double(inChannels * patchSize * patchSize) * d
        f += 2 * bb * (Double(timeEmbedDim) * d + d * d)                       // timestep_embedder
        f += 2 * bb * ll * e * p                                               // caption_proj
        f += 2 * bb * (ll + 1) * e * 2 * e + 2 * bb * (e * e + e * d)          // pool: to_kv, to_q, to_out
        for i in 0..<numLayers {
            let last = i == numLayers - 1
            var block = 2 * bb * ss * (4 * d * d + (gated + 1) * ff * d)
            block += 2 * bb * ll * 3 * p * d
            block += 4 * bb * ss * (ss + ll) * d
            block += 2 * bb * d * 4 * d                                        // norm1
            if last {
                block += 2 * bb * d * p                                        // norm1_context.linear_1
            } else {
                block += 2 * bb * ll * (d * p + (gated + 1) * ffc * p)
                block += 4 * bb * ll * (ss + ll) * d
                block += 2 * bb * d * 4 * p                                    // norm1_context
            }
            f += block
        }
        f += 2 * bb * d * 2 * d + 2 * bb * ss * d * Double(outputTokenWidth)
        return f
    }

    /// Estimated bytes of the activations alive at once inside a block (the largest set): the visual
    /// tokens, their normalised copy, the fused q/k/v output and its normalised/rotated copies, the joint
    /// keys and values, the attention output and the feed-forward's projection (2·ffInner when gated) and
    /// activation — about `(13·D + 3·ffInner)·S` floats — plus the caption stream's share and one query
    /// block of attention scores per thread.
    public func activationBytesEstimate(batch b: Int, visualTokens s: Int, textTokens l: Int) -> Int {
        let scores = attentionQueryBlock * (s + l) * Parallelism.threadCount
        let visual = b * s * (13 * innerDim + 3 * feedForwardInnerDim)
        let text = b * l * (8 * innerDim + 6 * pooledProjectionDim + 3 * contextFeedForwardInnerDim)
        return 4 * (visual + text + scores)
    }
}

extension MochiTransformer {
    /// Random inputs of a Mochi pipeline shape: latent `[B, in_channels, F, H, W]`, `textTokens` caption
    /// features with an all-ones mask, timestep 500 (sigma 0.5).
    ///
    /// - Throws: `malformedConfig` for sizes outside ``SizeLimits`` or a latent not divisible by the patch.
    public static func randomInputs(
        configuration c: MochiConfiguration, batch b: Int, frames f: Int, height h: Int, width w: Int,
        textTokens l: Int, seed: UInt64
    ) throws(ModelLoadError) -> MochiInput {
        for (field, v) in [("batch", b), ("latent_frames", f), ("latent_height", h), ("latent_width", w),
                           ("text_tokens", l)] {
            try SizeLimits.checkInput(field, v)
        }
        try SizeLimits.checkInputElements("hidden_states", [b, c.inChannels, f, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, c.textEmbedDim])
        guard h % c.patchSize == 0, w % c.patchSize == 0 else {
            throw .malformedConfig(reason: "latent \(h)×\(w) must be divisible by patch_size \(c.patchSize)")
        }
        var g = SeededGenerator(seed: seed)
        do {
            return MochiInput(hiddenStates: try .randomNormal(shape: [b, c.inChannels, f, h, w], using: &g),
                              encoderHiddenStates: try .randomNormal(shape: [b, l, c.textEmbedDim], using: &g),
                              timestep: try Tensor(shape: [b], repeating: 500),
                              encoderAttentionMask: try Tensor(shape: [b, l], repeating: 1))
        } catch {
            throw .tensor(error)
        }
    }
}
