import Tensors

extension HunyuanVideoConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, RoPE and softmax
    /// are not counted), for `s` image tokens and `l` text tokens per sample.
    ///
    /// Per token, a dual-stream block costs `2·(4D² + 2·D·M)` on either stream (q, k, v, out; feed-forward
    /// of width M), a single-stream block `2·(3D² + D·M + (D + M)·D)`, each `4·T²·D` of attention over the
    /// `T = S + L` joint tokens; the token refiner's blocks cost `2·(4D² + 2·D·4D)` per text token plus
    /// `4·L²·D`; plus the patch embedding, the conditioning MLPs, every adaLN projection and the output head.
    public func forwardFLOPs(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Double {
        let d = Double(innerDim), m = Double(mlpHiddenDim), r = Double(refinerMLPHiddenDim)
        let bb = Double(b), ss = Double(s), ll = Double(l), t = ss + ll
        let ch = Double(Self.timestepChannels), e = Double(textEmbedDim)
        let patchIn = Double(inChannels * patchSizeT * patchSize * patchSize)
        let timeMLP = 2 * bb * (ch * d + d * d)
        var f = 2 * bb * ss * patchIn * d
        f += timeMLP * (1 + (guidanceEmbeds ? 1 : 0) + (usesTokenReplace ? 1 : 0))
        f += 2 * bb * (Double(pooledProjectionDim) * d + d * d)
        // context_embedder: its own time and pooled-text MLPs, proj_in, the refiner blocks.
        f += timeMLP + 2 * bb * (e * d + d * d) + 2 * bb * ll * e * d
        let refiner = 2 * bb * ll * (4 * d * d + 2 * d * r) + 4 * bb * ll * ll * d + 2 * bb * d * 2 * d
        f += Double(numRefinerLayers) * refiner
        let modulations = usesTokenReplace ? 2.0 : 1.0
        let attention = 4 * bb * t * t * d
        let double = 2 * bb * t * (4 * d * d + 2 * d * m) + attention + 2 * bb * d * 6 * d * (1 + modulations)
        let single = 2 * bb * t * (3 * d * d + d * m + (d + m) * d) + attention + 2 * bb * d * 3 * d * modulations
        f += Double(numLayers) * double + Double(numSingleLayers) * single
        f += 2 * bb * d * 2 * d + 2 * bb * ss * d * Double(outputWidth)
        return f
    }

    /// Estimated bytes of the activations alive at once inside a single-stream block (the largest set):
    /// the joint sequence and its normalised copy, the fused q/k/v/MLP output and its split copies, the
    /// normalised and rotated q and k, the attention output, the activated MLP, the projection and the new
    /// sequence — about `(15·D + 3·M)·T` floats for `T = S + L` tokens — plus one query block of attention
    /// scores per thread.
    /// The product is taken in `Double` and saturates at `Int.max`, so no size can make it trap.
    public func activationBytesEstimate(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Int {
        let t = Double(s) + Double(l)
        let scores = Double(attentionQueryBlock) * t * Double(Parallelism.threadCount)
        let bytes = 4 * (Double(b) * t * (15 * Double(innerDim) + 3 * Double(mlpHiddenDim)) + scores)
        return bytes < 0x1p62 ? Int(bytes) : Int.max
    }
}

extension HunyuanVideoTransformer {
    /// Random inputs of a HunyuanVideo pipeline shape: latent `[B, in_channels, F, H, W]`, `textTokens`
    /// text-encoder states of which the first `validTextTokens` are valid (the rest padding, as the
    /// pipeline pads its prompt), a pooled embedding, timestep 500 (sigma 0.5) and guidance 6000.
    ///
    /// - Throws: `malformedConfig` for sizes outside ``SizeLimits`` or a grid the patch does not divide.
    public static func randomInputs(
        configuration c: HunyuanVideoConfiguration, batch b: Int, frames f: Int, height h: Int, width w: Int,
        textTokens l: Int, validTextTokens valid: Int, seed: UInt64
    ) throws(ModelLoadError) -> HunyuanVideoInput {
        for (field, v) in [("batch", b), ("latent_frames", f), ("latent_height", h), ("latent_width", w),
                           ("text_tokens", l), ("valid_text_tokens", valid)] {
            try SizeLimits.checkInput(field, v)
        }
        guard valid <= l else {
            throw .malformedConfig(reason: "valid_text_tokens = \(valid) exceeds text_tokens = \(l)")
        }
        try SizeLimits.checkInputElements("hidden_states", [b, c.inChannels, f, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, c.textEmbedDim])
        guard f % c.patchSizeT == 0, h % c.patchSize == 0, w % c.patchSize == 0 else {
            throw .malformedConfig(reason: "latent \(f)×\(h)×\(w) must be divisible by (patch_size_t, patch_size, patch_size) "
                                      + "= (\(c.patchSizeT), \(c.patchSize), \(c.patchSize))")
        }
        var g = SeededGenerator(seed: seed)
        do {
            var mask = [Float](repeating: 0, count: b * l)
            for bi in 0..<b { for j in 0..<valid { mask[bi * l + j] = 1 } }
            return HunyuanVideoInput(
                hiddenStates: try .randomNormal(shape: [b, c.inChannels, f, h, w], using: &g),
                timestep: try Tensor(shape: [b], repeating: 500),
                encoderHiddenStates: try .randomNormal(shape: [b, l, c.textEmbedDim], using: &g),
                encoderAttentionMask: try Tensor(shape: [b, l], scalars: mask),
                pooledProjections: try .randomNormal(shape: [b, c.pooledProjectionDim], using: &g),
                guidance: c.guidanceEmbeds ? try Tensor(shape: [b], repeating: HunyuanVideoFamily.embeddedGuidance) : nil)
        } catch {
            throw .tensor(error)
        }
    }
}
