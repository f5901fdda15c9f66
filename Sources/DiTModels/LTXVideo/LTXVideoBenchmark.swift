import Tensors

extension LTXVideoConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, RoPE and softmax
    /// are not counted), for `s` video tokens, `l` caption tokens and `timesteps` time-embedding rows
    /// per sample (1, or `s` for per-token timesteps).
    ///
    /// Per block and video token: self-attention q, k, v, out `4D²`, cross-attention q/out `2D²`,
    /// feed-forward `D·ffn_in + ffn·D` (`ffn_in = 2·ffn` for gated activations); per caption token the
    /// cross-attention k, v `2D²`; attention `4·S·K·D` for QKᵀ and PV against K keys. Plus `proj_in`,
    /// the time embedding (256 → D → D → 6D), the caption projection and `proj_out`.
    public func forwardFLOPs(batch b: Int, videoTokens s: Int, textTokens l: Int, timesteps t: Int = 1) -> Double {
        let d = Double(innerDim), bb = Double(b), ss = Double(s), ll = Double(l)
        let ffn = Double(ffnDim)
        let ffnIn = (feedForwardActivation?.isGated ?? false) ? 2 * ffn : ffn
        var f = 2 * bb * ss * Double(inChannels) * d
        f += 2 * bb * Double(t) * (Double(LTXVideoTimeEmbedding.frequencyChannels) * d + d * d + d * 6 * d)
        f += 2 * bb * ll * (Double(captionChannels) * d + d * d)
        var block = 2 * bb * ss * (4 * d * d + 2 * d * d + d * ffnIn + ffn * d)
        block += 2 * bb * ll * 2 * d * d
        block += 4 * bb * ss * ss * d + 4 * bb * ss * ll * d
        f += Double(numLayers) * block
        f += 2 * bb * ss * d * Double(outChannels)
        return f
    }

    /// Estimated bytes of the activations alive at once inside a block (the largest set): the tokens,
    /// the normalised copy, the stacked q/k/v and their normalised/rotated copies, the attention output,
    /// the feed-forward hidden layer before and after the activation — about `(10·D + 2·ffn_in)·S`
    /// floats — the rotary tables (`2·S·D`), the caption and its keys/values, and one query block of
    /// attention scores per thread.
    public func activationBytesEstimate(batch b: Int, videoTokens s: Int, textTokens l: Int) -> Int {
        let ffnIn = (feedForwardActivation?.isGated ?? false) ? 2 * ffnDim : ffnDim
        let scores = attentionQueryBlock * max(s, l) * Parallelism.threadCount
        return 4 * (b * s * (10 * innerDim + 2 * ffnIn) + 2 * s * innerDim + 4 * b * l * innerDim + scores)
    }
}

extension LTXVideoTransformer {
    /// `rope_interpolation_scale` of LTXPipeline at 25 fps: (temporal compression 8 / 25, spatial
    /// compression 32, 32).
    public static let pipelineRopeInterpolationScale: [Float] = [8.0 / 25.0, 32, 32]

    /// Random inputs of an LTX pipeline shape: packed latent tokens `[B, F·H·W, in_channels]`, `textTokens`
    /// caption features with an all-ones mask, timestep 500 (sigma 0.5) and LTXPipeline's
    /// `rope_interpolation_scale`.
    public static func randomInputs(
        configuration c: LTXVideoConfiguration, batch b: Int, frames f: Int, height h: Int, width w: Int,
        textTokens l: Int, seed: UInt64
    ) throws(ModelLoadError) -> LTXVideoInput {
        for (field, v) in [("batch", b), ("latent_frames", f), ("latent_height", h), ("latent_width", w),
                           ("text_tokens", l)] {
            try SizeLimits.checkInput(field, v)
        }
        try SizeLimits.checkInputElements("hidden_states", [b, f, h, w, c.inChannels])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, c.captionChannels])
        var g = SeededGenerator(seed: seed)
        do {
            return LTXVideoInput(
                hiddenStates: try .randomNormal(shape: [b, f * h * w, c.inChannels], using: &g),
                encoderHiddenStates: try .randomNormal(shape: [b, l, c.captionChannels], using: &g),
                timestep: try Tensor(shape: [b], repeating: 500),
                encoderAttentionMask: try Tensor(shape: [b, l], repeating: 1),
                numFrames: f, height: h, width: w, ropeInterpolationScale: pipelineRopeInterpolationScale)
        } catch {
            throw .tensor(error)
        }
    }
}
