import Tensors

/// Argument checks shared by both Lumina models.
enum LuminaInputChecks {
    /// The sizes of a call.
    struct Sizes {
        let batch: Int, height: Int, width: Int, textTokens: Int
        /// Image tokens `(H/p)(W/p)`.
        let imageTokens: Int
    }

    /// A finite latent `[B, in_channels, H, W]` (H, W multiples of the patch) and finite caption features
    /// `[B, L > 0, width]`.
    static func latentAndCaption(
        _ latent: Tensor, _ caption: Tensor, inChannels: Int, patch: Int, captionWidth: (Int, String), operation: String
    ) throws(TensorError) -> Sizes {
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: operation, reason: reason) }
        let s = latent.shape
        guard s.count == 4, s[1] == inChannels, s[0] > 0, s[2] > 0, s[3] > 0 else {
            throw fail("hidden_states must be [B, in_channels = \(inChannels), H, W] with B, H, W > 0, got \(s)")
        }
        let (b, h, w) = (s[0], s[2], s[3])
        guard h % patch == 0, w % patch == 0 else { throw fail("the latent \(h)×\(w) is not divisible by patch_size = \(patch)") }
        let e = caption.shape
        guard e.count == 3, e[0] == b, e[1] > 0, e[2] == captionWidth.0 else {
            throw fail("encoder_hidden_states must be [B = \(b), L > 0, \(captionWidth.1) = \(captionWidth.0)], got \(e)")
        }
        for (name, v) in [("hidden_states", latent), ("encoder_hidden_states", caption)] where !v.isFinite {
            throw fail("\(name) holds NaN or infinite values")
        }
        return Sizes(batch: b, height: h, width: w, textTokens: e[1], imageTokens: (h / patch) * (w / patch))
    }

    /// A `[B, L]` mask of zeros and ones; with `requireToken`, every sample has at least one 1.
    static func binaryMask(
        _ m: Tensor, batch b: Int, length l: Int, name: String, operation: String, requireToken: Bool
    ) throws(TensorError) {
        guard m.shape == [b, l] else {
            throw .shapeMismatch(operation: operation, shapes: [m.shape], reason: "\(name) must be [B, L] = [\(b), \(l)]")
        }
        let v = m.scalars
        guard v.allSatisfy({ $0 == 0 || $0 == 1 }) else {
            throw .invalidArgument(operation: operation, reason: "\(name) must hold only 0 (padding) and 1 (token)")
        }
        if requireToken {
            for i in 0..<b where !v[(i * l)..<((i + 1) * l)].contains(1) {
                throw .invalidArgument(operation: operation,
                                       reason: "\(name) of sample \(i) selects no token (diffusers would divide by zero)")
            }
        }
    }

    /// The timestep values: `[B]`, or `[1]` for every sample; finite.
    static func timesteps(_ t: Tensor, batch b: Int, operation: String) throws(TensorError) -> [Float] {
        guard t.rank == 1, t.shape[0] == b || t.shape[0] == 1 else {
            throw .shapeMismatch(operation: operation, shapes: [t.shape], reason: "timestep must be [B = \(b)] or [1]")
        }
        let v = t.scalars
        guard v.allSatisfy(\.isFinite) else {
            throw .invalidArgument(operation: operation, reason: "timestep holds NaN or infinite values: \(v)")
        }
        return v.count == b ? v : Array(repeating: v[0], count: b)
    }
}

