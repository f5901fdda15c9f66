import Tensors

extension Lumina2Configuration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, RoPE and softmax
    /// are not counted) for `s` image tokens and `l` caption tokens per sample, all of them valid (so
    /// the joint sequence has `l + s` tokens).
    ///
    /// A block over T tokens costs `2·T·D·(2q + 2kv)` for q, k, v and `to_out`, `6·T·D·F` for the
    /// SwiGLU feed-forward and `4·T²·q` for attention (`q = heads·Dh`), plus its `norm1` modulation when
    /// it has one. The context refiner runs on the L caption tokens, the noise refiner on the S image
    /// tokens, the layers on L + S. Plus the time and caption embeddings, `x_embedder` and `norm_out`.
    public func forwardFLOPs(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Double {
        let bb = Double(b), d = Double(hiddenSize)
        let q = Double(heads.queryWidth), kv = Double(heads.kvWidth), f = Double(ffnInnerDim)
        let dt = Double(conditioningDim), ch = Double(LuminaNextTimeCaptionEmbedding.frequencyChannels)
        func block(_ t: Double, modulated: Bool) -> Double {
            var x = 2 * bb * t * d * (2 * q + 2 * kv) + 6 * bb * t * d * f + 4 * bb * t * t * q
            if modulated { x += 2 * bb * dt * 4 * d }
            return x
        }
        let ss = Double(s), ll = Double(l)
        var flops = 2 * bb * (ch * dt + dt * dt) + 2 * bb * ll * Double(capFeatDim) * d
        flops += 2 * bb * ss * Double(patchSize * patchSize * inChannels) * d
        flops += Double(numRefinerLayers) * (block(ll, modulated: false) + block(ss, modulated: true))
        flops += Double(numLayers) * block(ll + ss, modulated: true)
        flops += 2 * bb * dt * d + 2 * bb * ss * d * Double(patchSize * patchSize * outChannels)
        return flops
    }

    /// Estimated bytes of the activations alive at once inside a joint block (the largest set) over
    /// `T = L + S` tokens: the joint sequence and its modulated copy, q/k/v with their split, normalised
    /// and rotated copies and repeated key/value heads, the attention output and its projection, the
    /// feed-forward's `2F`-wide input projection and `F`-wide gated output — about `(14·D + 3·F)·T`
    /// floats — plus one query block of attention scores per thread.
    public func activationBytesEstimate(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Int {
        let t = s + l
        let scores = attentionQueryBlock * t * Parallelism.threadCount
        return 4 * (b * t * (14 * hiddenSize + 3 * ffnInnerDim) + scores)
    }
}

extension Lumina2Transformer {
    /// Random inputs of a Lumina2 pipeline shape: a latent `[B, in_channels, H, W]`, `textTokens` caption
    /// features of which the first `validTokens` (default all) are unmasked, and timestep 0.5.
    ///
    /// - Throws: `malformedConfig` for sizes outside ``SizeLimits`` or not divisible by `patch_size`.
    public static func randomInputs(
        configuration c: Lumina2Configuration, batch b: Int, latentHeight h: Int, latentWidth w: Int,
        textTokens l: Int, validTokens: Int? = nil, seed: UInt64
    ) throws(ModelLoadError) -> Lumina2Input {
        _ = try LuminaInputChecks.benchmarkSizes(batch: b, height: h, width: w, textTokens: l, patch: c.patchSize,
                                                 channels: c.inChannels, captionWidth: c.capFeatDim)
        let valid = min(validTokens ?? l, l)
        var g = SeededGenerator(seed: seed)
        do {
            let mask = (0..<(b * l)).map { Float($0 % l < valid ? 1 : 0) }
            return Lumina2Input(hiddenStates: try .randomNormal(shape: [b, c.inChannels, h, w], using: &g),
                                timestep: try Tensor(shape: [b], repeating: 0.5),
                                encoderHiddenStates: try .randomNormal(shape: [b, l, c.capFeatDim], using: &g),
                                encoderAttentionMask: try Tensor(shape: [b, l], scalars: mask))
        } catch {
            throw .tensor(error)
        }
    }
}
