import Foundation
import TeaCache
import Tensors

// The plumbing Lumina-Next and Lumina2 share: the random-weight taper of their timestep MLP, the
// reference's coefficients, and the benchmark sizes check of their random inputs.

/// The §6 taper of both Lumina models' `time_caption_embed.timestep_embedder.linear_1.weight` (256
/// sinusoid channels, shift 0), `u = 1 / steps`.
func luminaTimestepTaper(steps: Int) -> WeightAdjustment {
    let frequencies = sinusoidalColumnFrequencies(dim: LuminaWidths.timestepChannels, downscaleFreqShift: 0)
    let u = 1 / Double(steps)
    return { name, tensor in
        if name == "time_caption_embed.timestep_embedder.linear_1.weight" {
            taperTimestepColumns(&tensor, frequencies: frequencies, stepSize: u)
        }
    }
}

/// The reference repository's Lumina coefficients (ali-vilab/TeaCache @ 7c10efc, copied character for
/// character from teacache-spec.md §2.2), shared by TeaCache4Lumina-T2X and the active v1 coefficients of
/// TeaCache4Lumina2.
extension TeaCachePreset {
    static let luminaCoefficients = [393.76566581, -603.50993606, 209.10239044, -23.00726601, 0.86377344]
}

extension LuminaInputChecks {
    /// Benchmark or random-input sizes: each of batch, latent height and width (multiples of the patch)
    /// and caption tokens in `1 ... SizeLimits.maximumExtent`, and the latent `[B, C, H, W]` and caption
    /// `[B, L, E]` within ``SizeLimits/maximumInputElements`` (checked before anything multiplies them).
    static func benchmarkSizes(
        batch b: Int, height h: Int, width w: Int, textTokens l: Int, patch: Int, channels: Int, captionWidth e: Int
    ) throws(ModelLoadError) -> Sizes {
        for (field, v) in [("batch", b), ("latent_height", h), ("latent_width", w), ("text_tokens", l)] {
            try SizeLimits.checkInput(field, v)
        }
        try SizeLimits.checkInputElements("hidden_states", [b, channels, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, e])
        guard h % patch == 0, w % patch == 0 else {
            throw .malformedConfig(reason: "latent \(h)×\(w) must be divisible by patch_size \(patch)")
        }
        return Sizes(batch: b, height: h, width: w, textTokens: l, imageTokens: (h / patch) * (w / patch))
    }

    /// ``benchmarkSizes(batch:height:width:textTokens:patch:channels:captionWidth:)`` of a benchmark table's
    /// `batch`, `latent_height`, `latent_width` and `text_tokens`.
    static func benchmarkSizes(_ sizes: BenchmarkInputs, patch: Int, channels: Int, captionWidth: Int) throws(ModelLoadError) -> Sizes {
        try benchmarkSizes(batch: sizes.positive("batch"), height: sizes.positive("latent_height"),
                           width: sizes.positive("latent_width"), textTokens: sizes.positive("text_tokens"),
                           patch: patch, channels: channels, captionWidth: captionWidth)
    }
}
