import TeaCache
import Tensors

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
