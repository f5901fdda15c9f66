import TeaCache

/// The reference repository's HunyuanVideo (TeaCache4HunyuanVideo) coefficients (ali-vilab/TeaCache @ 7c10efc, copied character
/// for character from teacache-spec.md §2.2) and its published thresholds and speedups (§2.1, §3).
extension TeaCachePreset {
    /// HunyuanVideo. Default δ 0.15.
    public static let hunyuanVideo = TeaCachePreset(
        reference: "hunyuan_video",
        [7.33226126e+02, -4.01131952e+02, 6.75869174e+01, -3.14987800e+00, 9.61237896e-02],
        defaultThreshold: 0.15, speedups: [(0.1, 1.6), (0.15, 2.1)],
        modulatedInput: "double_blocks[0]: modulate(img_norm1(img), shift1, scale1) = diffusers transformer_blocks[0].norm1(h_in, emb=temb)[0]",
        provenance: "TeaCache4HunyuanVideo/teacache_sample_video.py")
}
