import TeaCache

/// The reference repository's Mochi (TeaCache4Mochi) coefficients (ali-vilab/TeaCache @ 7c10efc, copied character
/// for character from teacache-spec.md §2.2) and its published thresholds and speedups (§2.1, §3).
extension TeaCachePreset {
    /// Mochi-1-preview. Default δ 0.09. The residual includes the final norm.
    public static let mochi = TeaCachePreset(
        reference: "mochi",
        [-3.51241319e+03, 8.11675948e+02, -6.09400215e+01, 2.42429681e+00, 3.05291719e-03],
        defaultThreshold: 0.09, speedups: [(0.06, 1.5), (0.09, 2.1)],
        modulatedInput: "transformer_blocks[0].norm1(h_in, temb)[0] (RMSNorm(x)·(1+scale_msa))",
        provenance: "TeaCache4Mochi/teacache_mochi.py")
}
