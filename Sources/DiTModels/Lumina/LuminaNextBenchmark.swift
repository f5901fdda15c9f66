import Tensors

extension LuminaNextConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, RoPE and softmax
    /// are not counted) for `s` image tokens and `l` caption tokens per sample.
    ///
    /// Per block and image token: the four projections of `x̂` (`2·q + 2·kv` wide), `to_out`, the SwiGLU
    /// feed-forward (`3·D·F`), and attention `4·S·q` (self) plus `4·L·q` (cross) for `q = heads·Dh`; per
    /// caption token the key/value projections; per sample the `norm1` modulation. Plus the patch
    /// embedding, the time and caption embeddings and `norm_out`.
    public func forwardFLOPs(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Double {
        let bb = Double(b), ss = Double(s), ll = Double(l), d = Double(hiddenSize)
        let q = Double(heads.queryWidth), kv = Double(heads.kvWidth), f = Double(ffnInnerDim)
        let e = Double(crossAttentionDim), dt = Double(conditioningDim)
        let ch = Double(LuminaNextTimeCaptionEmbedding.frequencyChannels)
        let patchIn = Double(patchSize * patchSize * inChannels), patchOut = Double(patchSize * patchSize * outChannels)
        var flops = 2 * bb * ss * patchIn * d
        flops += 2 * bb * (ch * dt + dt * dt + e * dt)
        var block = 2 * bb * ss * d * (2 * q + 2 * kv) + 2 * bb * ll * e * 2 * kv
        block += 4 * bb * ss * ss * q + 4 * bb * ss * ll * q
        block += 2 * bb * ss * q * d + 2 * bb * ss * 3 * d * f
        block += 2 * bb * dt * 4 * d
        flops += Double(numLayers) * block
        flops += 2 * bb * dt * d + 2 * bb * ss * d * patchOut
        return flops
    }

    /// Estimated bytes of the activations alive at once inside a block (the largest set): the tokens, the
    /// modulated copy, the four projections and their split, normalised and rotated copies, repeated
    /// key/value heads, the two attention outputs and their gated sum, the feed-forward's `2F`-wide input
    /// projection and its `F`-wide gated output — about `(16·D + 3·F)·S` floats — plus the caption keys
    /// and values and one query block of attention scores per thread.
    public func activationBytesEstimate(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Int {
        let scores = attentionQueryBlock * max(s, l) * Parallelism.threadCount
        return 4 * (b * s * (16 * hiddenSize + 3 * ffnInnerDim) + 4 * b * l * heads.queryWidth + scores)
    }
}

extension LuminaNextTransformer {
    /// Random inputs of a Lumina-Next pipeline shape: a latent `[B, in_channels, H, W]`, `textTokens`
    /// caption features with an all-ones mask, timestep 0.5, and the pipeline's rotary scaling and
    /// proportional-attention base for that size.
    ///
    /// - Throws: `malformedConfig` for sizes outside ``SizeLimits`` or not divisible by `patch_size`.
    public static func randomInputs(
        configuration c: LuminaNextConfiguration, batch b: Int, latentHeight h: Int, latentWidth w: Int,
        textTokens l: Int, seed: UInt64
    ) throws(ModelLoadError) -> LuminaNextInput {
        _ = try LuminaInputChecks.benchmarkSizes(batch: b, height: h, width: w, textTokens: l, patch: c.patchSize,
                                                 channels: c.inChannels, captionWidth: c.crossAttentionDim)
        let settings = try pipelineSettings(configuration: c, latentHeight: h, latentWidth: w, timestep: 0.5)
        var g = SeededGenerator(seed: seed)
        do {
            return LuminaNextInput(
                hiddenStates: try .randomNormal(shape: [b, c.inChannels, h, w], using: &g),
                timestep: try Tensor(shape: [b], repeating: 0.5),
                encoderHiddenStates: try .randomNormal(shape: [b, l, c.crossAttentionDim], using: &g),
                encoderMask: try Tensor(shape: [b, l], repeating: 1),
                rotary: settings.rotary, baseSequenceLength: settings.baseSequenceLength)
        } catch {
            throw .tensor(error)
        }
    }
}
