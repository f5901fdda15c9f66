import Tensors

extension FluxConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations and softmax
    /// are not counted).
    ///
    /// Per token and block both block kinds cost `24·D²` (double: q, k, v, out = 4D², feed-forward 8D²;
    /// single: q, k, v 3D², MLP in 4D², out 5D²), plus `4·H·T²·Dh` attention over the `T = L + S` joint
    /// tokens, plus embeddings, adaLN projections and the output head.
    public func forwardFLOPs(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Double {
        let c = self
        let d = Double(c.innerDim), bb = Double(b), ss = Double(s), ll = Double(l), t = ss + ll
        let ch = Double(FluxConfiguration.timestepChannels)
        var f = 2 * bb * ss * Double(c.inChannels) * d + 2 * bb * ll * Double(c.jointAttentionDim) * d
        f += 2 * bb * (ch * d + d * d) * (c.guidanceEmbeds ? 2 : 1) + 2 * bb * (Double(c.pooledProjectionDim) * d + d * d)
        let attentionFLOPs = 4 * bb * t * t * d
        let double = 2 * bb * t * 12 * d * d + attentionFLOPs + 2 * (2 * bb * d * 6 * d)
        let single = 2 * bb * t * 12 * d * d + attentionFLOPs + 2 * bb * d * 3 * d
        f += Double(c.numLayers) * double + Double(c.numSingleLayers) * single
        f += 2 * bb * d * 2 * d + 2 * bb * ss * d * Double(c.outputWidth)
        return f
    }

    /// Estimated bytes of the activations alive at once inside a single-stream block (the largest set):
    /// the joint sequence and its normalised copy, MLP pre- and post-activation (4D each), q, k, v and
    /// their rotated copies, the attention output, the 5D-wide concatenation and the block output —
    /// about `23·T·D` floats for `T = L + S` tokens, plus one query block of attention scores per thread.
    public func activationBytesEstimate(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Int {
        let t = s + l
        let scores = attentionQueryBlock * t * Parallelism.threadCount
        return 4 * (23 * b * t * innerDim + scores)
    }

}

extension FluxTransformer {
    /// Position ids `[h·w, n]` of a packed `h × w` latent grid, FLUX style: all zeros except the last two
    /// columns, which hold the row and the column (a single-axis configuration gets the token index).
    public static func packedImageIDs(height h: Int, width w: Int, axes n: Int) throws(TensorError) -> Tensor {
        var ids = [Float](repeating: 0, count: h * w * n)
        for r in 0..<h {
            for col in 0..<w {
                let tok = r * w + col
                if n >= 2 {
                    ids[tok * n + n - 2] = Float(r)
                    ids[tok * n + n - 1] = Float(col)
                } else {
                    ids[tok * n] = Float(tok)
                }
            }
        }
        return try Tensor(shape: [h * w, n], scalars: ids)
    }

    /// Random inputs of a FLUX pipeline shape: a `latentHeight × latentWidth` latent packed 2×2 into
    /// `(H/2)(W/2)` tokens, `textTokens` text tokens, sigma 0.5 and guidance 3.5.
    ///
    /// - Throws: `malformedConfig` for odd latent sizes, or sizes outside ``SizeLimits``.
    public static func randomInputs(
        configuration c: FluxConfiguration, batch: Int, latentHeight: Int, latentWidth: Int, textTokens: Int,
        seed: UInt64
    ) throws(ModelLoadError) -> FluxInput {
        for (field, v) in [("batch", batch), ("latent_height", latentHeight), ("latent_width", latentWidth),
                           ("text_tokens", textTokens)] {
            try SizeLimits.checkInput(field, v)
        }
        try SizeLimits.checkInputElements("hidden_states", [batch, latentHeight / 2, latentWidth / 2, c.inChannels])
        try SizeLimits.checkInputElements("encoder_hidden_states", [batch, textTokens, c.jointAttentionDim])
        guard latentHeight % 2 == 0, latentWidth % 2 == 0 else {
            throw .malformedConfig(reason: "latent_height and latent_width must be even (FLUX packs 2×2 patches)")
        }
        let (h, w) = (latentHeight / 2, latentWidth / 2)
        var g = SeededGenerator(seed: seed)
        do {
            return FluxInput(
                hiddenStates: try .randomNormal(shape: [batch, h * w, c.inChannels], using: &g),
                encoderHiddenStates: try .randomNormal(shape: [batch, textTokens, c.jointAttentionDim], using: &g),
                pooledProjections: try .randomNormal(shape: [batch, c.pooledProjectionDim], using: &g),
                timestep: try Tensor(shape: [batch], repeating: 0.5),
                imageIDs: try packedImageIDs(height: h, width: w, axes: c.axesDimsRope.count),
                textIDs: try Tensor(zeros: [textTokens, c.axesDimsRope.count]),
                guidance: c.guidanceEmbeds ? try Tensor(shape: [batch], repeating: 3.5) : nil)
        } catch {
            throw .tensor(error)
        }
    }
}
