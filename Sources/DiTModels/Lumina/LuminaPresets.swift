import TeaCache

/// The reference repository's Lumina-Next and Lumina-Image-2.0 (TeaCache4Lumina-T2X, TeaCache4Lumina2) coefficients (ali-vilab/TeaCache @ 7c10efc, copied character
/// for character from teacache-spec.md §2.2) and its published thresholds and speedups (§2.1, §3).
extension TeaCachePreset {
    static let luminaCoefficients = [393.76566581, -603.50993606, 209.10239044, -23.00726601, 0.86377344]

    /// Lumina-Next-SFT. Default δ 0.3.
    public static let luminaNext = TeaCachePreset(
        reference: "lumina_next", luminaCoefficients, defaultThreshold: 0.3,
        speedups: [(0.2, 1.5), (0.3, 1.9), (0.4, 2.4), (0.5, 2.8)],
        modulatedInput: "layers[0].norm1(h_in, temb)[0] (RMSNorm(x)·(1+scale_msa))",
        provenance: "TeaCache4Lumina-T2X/teacache_lumina_next.py")

    /// Lumina-Image-2.0, v1 coefficients (active in the script; = Lumina-Next). Default δ 0.3.
    public static let lumina2V1 = TeaCachePreset(
        reference: "lumina2_v1", luminaCoefficients, defaultThreshold: 0.3,
        speedups: [(0.2, 1.25), (0.3, 1.5625), (0.4, 2.0833), (0.5, 2.5)],
        modulatedInput: "layers[0].norm1(joint caption+image sequence, temb)[0]",
        provenance: "TeaCache4Lumina2/teacache_lumina2.py (v1)")

    /// Lumina-Image-2.0, v2 coefficients (Bayesian optimisation against LPIPS, PR #76). Default δ 0.3.
    public static let lumina2V2 = TeaCachePreset(
        reference: "lumina2_v2",
        [225.7042019806413, -608.8453716535591, 304.1869942338369, 124.21267720116742, -1.4089066892956552],
        defaultThreshold: 0.3, speedups: [(0.2, 1.5), (0.3, 1.6), (0.5, 1.8), (1.1, 2.1)],
        modulatedInput: "layers[0].norm1(joint caption+image sequence, temb)[0]",
        provenance: "TeaCache4Lumina2/teacache_lumina2.py (v2, commented alternative)")
}
