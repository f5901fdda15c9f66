import Foundation

/// The rules both Lumina configurations share.
enum LuminaConfigChecks {
    /// Sizes positive (layer counts non-negative) and within ``SizeLimits``, the patch width bounded,
    /// `num_attention_heads` a multiple of `num_kv_heads`, the feed-forward width valid, `norm_eps` finite
    /// and positive. `channels` and `ffnBase` are evaluated only after the sizes are bounded (they
    /// multiply them).
    static func validate(
        positive: [(String, Int)], layers: [(String, Int)], patch: Int, channels: @autoclosure () -> Int, heads: Int,
        kvHeads: Int, ffnBase: @autoclosure () -> Int, multipleOf: Int, ffnMultiplier: Double?, normEps: Float
    ) throws(ModelLoadError) {
        for (field, v) in positive where v <= 0 {
            throw .unsupportedConfig(field: field, value: "\(v)", reason: "must be a positive integer")
        }
        for (field, v) in layers where v < 0 {
            throw .unsupportedConfig(field: field, value: "\(v)", reason: "must be 0 or more")
        }
        for (field, v) in positive + layers { try SizeLimits.checkConfig(field, v) }
        guard Double(patch) * Double(patch) * Double(channels()) <= Double(SizeLimits.maximumExtent) else {
            throw .unsupportedConfig(field: "patch_size", value: "\(patch)",
                                     reason: "the patch width patch_size²·channels exceeds \(SizeLimits.maximumExtent)")
        }
        guard heads % kvHeads == 0 else {
            throw .unsupportedConfig(field: "num_kv_heads", value: "\(kvHeads)",
                                     reason: "num_attention_heads = \(heads) must be a multiple of it "
                                        + "(diffusers repeats each key/value head heads // kv_heads times)")
        }
        if let m = ffnMultiplier, !m.isFinite {
            throw .unsupportedConfig(field: "ffn_dim_multiplier", value: "\(m)", reason: "must be finite or null")
        }
        guard LuminaFeedForward.innerDim(base: ffnBase(), multipleOf: multipleOf, multiplier: ffnMultiplier) != nil else {
            throw .unsupportedConfig(field: "ffn_dim_multiplier", value: ffnMultiplier.map { "\($0)" } ?? "null",
                                     reason: "the feed-forward width must be between 0 and \(SizeLimits.maximumExtent)")
        }
        guard normEps.isFinite, normEps > 0 else {
            throw .unsupportedConfig(field: "norm_eps", value: "\(normEps)", reason: "must be a finite positive number")
        }
    }
}
