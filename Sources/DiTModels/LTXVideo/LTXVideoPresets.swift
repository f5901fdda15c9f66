import TeaCache

/// The reference repository's LTX-Video (TeaCache4LTX-Video) coefficients (ali-vilab/TeaCache @ 7c10efc, copied character
/// for character from teacache-spec.md §2.2) and its published thresholds and speedups (§2.1, §3).
extension TeaCachePreset {
    /// LTX-Video 0.9.1. Default δ 0.05. The residual includes the output norm and modulation.
    public static let ltxVideo = TeaCachePreset(
        reference: "ltx_video",
        [2.14700694e+01, -1.28016453e+01, 2.31279151e+00, 7.92487521e-01, 9.69274326e-03],
        defaultThreshold: 0.05, speedups: [(0.03, 1.6), (0.05, 2.1)],
        modulatedInput: "norm1(h_in)·(1+scale_msa)+shift_msa of block 0 (scale_shift_table + temb)",
        provenance: "TeaCache4LTX-Video/teacache_ltx.py")
}
